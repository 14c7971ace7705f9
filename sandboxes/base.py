"""The one sandbox interface every other folder uses.

A `SandboxSpec` says what to isolate and how much it may use; `open_sandbox(spec)` picks a backend
(Docker when an engine answers, else the weaker process sandbox) and returns a `Sandbox`.
Files move in and out through the host workspace that is bind-mounted at /work.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

ExitReason = Literal["exited", "timeout", "oom", "killed", "error", "quota"]


class SandboxError(RuntimeError):
    """A sandbox could not be created or used (bad spec, engine failure). Never raised for the
    command's own failure: that is an `ExecResult` with a non-zero exit code."""


class InvalidSpec(SandboxError, ValueError):
    """A `SandboxSpec` that cannot work (unknown image, negative limits...); raised before anything starts,
    listing every problem at once."""


@dataclass(frozen=True)
class SandboxSpec:
    """What to isolate. Every limit is enforced by the backend or reported as not enforced by `doctor`."""

    image: str = "m3lab/default"
    """Image name (Docker backend); the process backend runs the host's own root read-only."""
    workspace: Path | None = None
    """Host folder bind-mounted read-write at /work; the only host path the code can write."""
    memory_mb: int = 2048
    """Hard memory limit (RAM + swap); exceeding it ends the exec with reason "oom"."""
    cpus: float = 1.0
    """CPU quota in cores."""
    pids: int = 256
    """Maximum number of processes/threads (fork bombs hit this)."""
    tmpfs_mb: int = 512
    """Size of the writable /tmp (and $HOME) tmpfs; the root filesystem is read-only."""
    max_file_mb: int = 4096
    """Largest single file the code may write anywhere (RLIMIT_FSIZE): bounds a disk fill of the workspace,
    which is a host folder and so outside the tmpfs limit."""
    disk_mb: int = 8192
    """Most the workspace may hold (all files, lstat sizes, links not followed); a command that goes over it is
    stopped and its exec ends with reason "quota" (sandboxes/quota.py). 0 turns the quota off."""
    network: bool = False
    """Network access; off by default (no interface but loopback)."""
    exec_timeout_s: float = 600.0
    """Default wall-time limit of one exec."""
    lifetime_s: float = 6 * 3600.0
    """Wall-time limit of the whole sandbox; the reaper removes it afterwards."""
    gpu: bool = False
    """Expose the host's GPUs (Docker device requests or the process backend's /dev/nvidia*)."""
    user: str = "65534:65534"
    """uid:gid the code runs as (non-root)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """The complete environment of the code; the host environment is never inherited."""
    run_id: str | None = None
    """Run that owns this sandbox (a container label; the reaper removes sandboxes of dead runs)."""
    host_paths: tuple[Path, ...] = ()
    """Host paths exposed read-only (e.g. the project's .venv, so the process backend can run the host's own
    python): at the same path, except paths under /work (the workspace's mount point), which appear under
    /host (`/work/main/.venv` -> `/host/work/main/.venv`; see `sandboxes.base.inside_path`)."""


def inside_path(host_path: Path | str) -> str:
    """Where a `SandboxSpec.host_paths` entry appears inside the sandbox (a venv's python works from there)."""
    p = str(host_path)
    return f"/host{p}" if p == "/work" or p.startswith("/work/") else p


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one command in a sandbox."""

    exit_code: int
    stdout: str
    stderr: str
    duration_s: float
    reason: ExitReason

    @property
    def ok(self) -> bool:
        return self.reason == "exited" and self.exit_code == 0


class Sandbox(Protocol):
    """A running isolated environment. Use as a context manager; `close()` is idempotent."""

    spec: SandboxSpec
    backend: str

    def exec(
        self,
        cmd: str | Sequence[str],
        timeout_s: float | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str = "/work",
    ) -> ExecResult:
        """Run `cmd` (a string goes through `bash -c`; a list is exec'd as is); never raises for the command's
        own failure. `env` is added to the spec's environment for this command only."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Sandbox: ...

    def __exit__(self, *exc: object) -> None: ...
