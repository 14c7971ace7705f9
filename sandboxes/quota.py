"""The disk quota of a sandbox's workspace: a host folder, so no container limit covers it.

While a command runs, a watcher measures the workspace (sandboxes.hostfs: lstat walk, no link followed) every
`POLL_S` and kills the command's processes when it goes over `SandboxSpec.disk_mb`; after every exec the tree is
measured once more, and an exec that left it over the quota ends with reason "quota" (like "oom"). Cleaning up
(rolling the workspace back) is the owner's job: the sandbox does not know what the tree should hold.
RLIMIT_FSIZE (`max_file_mb`) still bounds each single file between two polls.
"""
from __future__ import annotations

import threading
from dataclasses import replace
from typing import Callable, Iterator
from contextlib import contextmanager

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


@contextmanager
def watching(spec: SandboxSpec, kill: Callable[[], object]) -> Iterator[None]:
    """Kill the sandbox's commands (`kill`) as soon as the workspace goes over its quota."""
    if not spec.disk_mb or spec.workspace is None:
        yield
        return
    done = threading.Event()

    def watch() -> None:
        while not done.wait(POLL_S):
            if over_quota(spec) is not None:
                kill()
                return

    thread = threading.Thread(target=watch, name="m3lab-quota", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def enforce(spec: SandboxSpec, result: ExecResult) -> ExecResult:
    """The exec's result, turned into a "quota" failure when it left the workspace over its quota."""
    used = over_quota(spec)
    if used is None:
        return result
    note = (f"\n[m3lab sandbox] the workspace holds {used:.0f} MB, over its disk quota of {spec.disk_mb} MB: "
            "the command was stopped")
    return replace(result, stderr=result.stderr + note, reason="quota")
