"""Checking a `SandboxSpec` before anything starts. Every problem is reported at once."""
from __future__ import annotations

import os
import re
from pathlib import Path

from sandboxes.base import InvalidSpec, SandboxSpec

_USER = re.compile(r"^(\d+)(?::(\d+))?$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MIN_MEMORY_MB = 16
"""Below this not even bash starts (Docker's own floor is 6 MB)."""
MIN_PIDS = 8
"""The init process, the shell and `timeout` need a few pids before the user's code gets any."""


def _limit_problems(spec: SandboxSpec) -> list[str]:
    problems = []
    if spec.memory_mb < MIN_MEMORY_MB:
        problems.append(f"memory_mb must be >= {MIN_MEMORY_MB}, got {spec.memory_mb}")
    ncpu = os.cpu_count() or 1
    if not 0 < spec.cpus <= ncpu:
        problems.append(f"cpus must be in (0, {ncpu}] on this host, got {spec.cpus}")
    if spec.pids < MIN_PIDS:
        problems.append(f"pids must be >= {MIN_PIDS}, got {spec.pids}")
    if spec.tmpfs_mb <= 0:
        problems.append(f"tmpfs_mb must be > 0, got {spec.tmpfs_mb}")
    if spec.max_file_mb <= 0:
        problems.append(f"max_file_mb must be > 0, got {spec.max_file_mb}")
    if spec.disk_mb < 0:
        problems.append(f"disk_mb must be >= 0 (0: no quota), got {spec.disk_mb}")
    if spec.exec_timeout_s <= 0:
        problems.append(f"exec_timeout_s must be > 0, got {spec.exec_timeout_s}")
    if spec.lifetime_s <= 0:
        problems.append(f"lifetime_s must be > 0, got {spec.lifetime_s}")
    return problems


def _identity_problems(spec: SandboxSpec) -> list[str]:
    problems = []
    if not spec.image or not isinstance(spec.image, str):
        problems.append("image must be a non-empty image name")
    m = _USER.match(spec.user or "")
    if m is None:
        problems.append(f"user must be 'uid' or 'uid:gid' (numbers), got {spec.user!r}")
    elif int(m.group(1)) == 0:
        problems.append("user must not be root (uid 0): sandboxed code runs unprivileged")
    for key, value in spec.env.items():
        if not isinstance(key, str) or not _ENV_KEY.match(key):
            problems.append(f"env key {key!r} is not a valid variable name")
        if not isinstance(value, str):
            problems.append(f"env value of {key!r} must be a string, got {type(value).__name__}")
    return problems


def _path_problems(spec: SandboxSpec) -> list[str]:
    problems = []
    if spec.workspace is not None and not Path(spec.workspace).is_dir():
        problems.append(f"workspace {spec.workspace} is not an existing directory")
    for p in spec.host_paths:
        if not Path(p).is_absolute() or not Path(p).exists():
            problems.append(f"host path {p} must be an existing absolute path")
    return problems


def spec_problems(spec: SandboxSpec) -> list[str]:
    """Everything wrong with `spec` (empty when it is usable). Image existence is the backend's check."""
    return _limit_problems(spec) + _identity_problems(spec) + _path_problems(spec)


def validate_spec(spec: SandboxSpec) -> None:
    """Raise `InvalidSpec` naming every problem, before any container or process starts."""
    problems = spec_problems(spec)
    if problems:
        raise InvalidSpec("invalid sandbox spec: " + "; ".join(problems))


def uid_gid(spec: SandboxSpec) -> tuple[int, int]:
    """The numeric uid and gid of a validated spec (gid defaults to the uid)."""
    m = _USER.match(spec.user)
    assert m is not None, "validate_spec first"
    uid = int(m.group(1))
    return uid, int(m.group(2) or uid)
