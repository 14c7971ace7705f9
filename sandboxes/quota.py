"""The disk quota of a sandbox's workspace: a host folder, so no container limit covers it.

While a command runs, a watcher thread (one per sandbox) measures the workspace (sandboxes.hostfs: lstat walk,
no link followed) every `POLL_S` and kills the command's processes when it goes over `SandboxSpec.disk_mb`; after
every exec the tree is measured once more, and an exec that left it over the quota ends with reason "quota" (like "oom"). Cleaning up
(rolling the workspace back) is the owner's job: the sandbox does not know what the tree should hold.
RLIMIT_FSIZE (`max_file_mb`) still bounds each single file between two polls.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from sandboxes import hostfs
from sandboxes.base import ExecResult, SandboxSpec

POLL_S = 1.0
MB = 1 << 20


def usage_mb(spec: SandboxSpec) -> float:
    """MB the workspace holds now (0 without a workspace)."""
    if spec.workspace is None:
        return 0.0
    try:
        return hostfs.disk_usage(spec.workspace) / MB
    except FileNotFoundError:
        return 0.0
    except OSError:
        return float("inf")  # a folder hidden from the host could hold anything: fail closed


def over_quota(spec: SandboxSpec) -> float | None:
    """The workspace's size in MB when it is over its quota, else None."""
    if not spec.disk_mb or spec.workspace is None:
        return None
    used = usage_mb(spec)
    return used if used > spec.disk_mb else None


class Watcher:
    """One thread per sandbox (started at its first exec) that measures the workspace every `POLL_S` while an
    exec runs and calls `kill` when it is over the quota; idle between execs, ended by `stop`."""

    def __init__(self, spec: SandboxSpec, kill: Callable[[], object]) -> None:
        self.spec, self.kill = spec, kill
        self._running = 0
        self._lock = threading.Lock()
        self._busy = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def running(self) -> Iterator[None]:
        """Watch while the body (one exec) runs."""
        if not self.spec.disk_mb or self.spec.workspace is None:
            yield
            return
        with self._lock:
            self._running += 1
            self._busy.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="m3lab-quota", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0:
                    self._busy.clear()

    def _watch(self) -> None:
        while not self._stopped.is_set():
            self._busy.wait()
            if self._stopped.wait(POLL_S) or not self._busy.is_set():
                continue
            if over_quota(self.spec) is not None:
                self.kill()

    def stop(self) -> None:
        self._stopped.set()
        self._busy.set()


def enforce(spec: SandboxSpec, result: ExecResult) -> ExecResult:
    """The exec's result, turned into a "quota" failure when it left the workspace over its quota."""
    used = over_quota(spec)
    if used is None:
        return result
    held = (f"holds {used:.0f} MB" if used != float("inf") else
            f"cannot be measured (a folder nested more than {hostfs.MAX_DEPTH} deep, or one the host cannot read)")
    note = f"\n[m3lab sandbox] the workspace {held}, over its disk quota of {spec.disk_mb} MB: the command was stopped"
    return replace(result, stderr=result.stderr + note, reason="quota")
