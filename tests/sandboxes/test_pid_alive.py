"""`pid_alive`, the one liveness check of sandbox owners (reaper, run folders) and model servers: a zombie is
dead. The zombie here is real: a child that has ended and that nobody has reaped yet."""
from __future__ import annotations

import os
import subprocess

from sandboxes.engine import pid_alive


def test_a_running_process_is_alive() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert pid_alive(os.getpid()) and pid_alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not pid_alive(child.pid)


def test_a_zombie_is_dead_though_its_pid_still_exists() -> None:
    child = subprocess.Popen(["true"])
    # Wait for the exit without reaping it (WNOWAIT): the child stays a zombie until child.wait().
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    os.kill(child.pid, 0)  # the pid is still there: no ProcessLookupError
    assert not pid_alive(child.pid)
    assert child.wait() == 0
    assert not pid_alive(child.pid)


def test_another_users_process_is_alive() -> None:
    assert pid_alive(1)  # init: signalling it may be refused (EPERM), it runs all the same
