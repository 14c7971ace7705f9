"""Control groups: OOM-kill counters of Docker containers, and limit groups for the process backend.

Handles cgroup v1 (these machines) and v2. The process backend's group is one directory per controller
(v1) or one directory (v2) under `m3lab/`; a wrapper shell writes its pid into `cgroup.procs` before it
execs bubblewrap, so every process of the sandbox is accounted from its first instruction.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def version() -> int | None:
    """2 on a unified hierarchy, 1 on v1, None where no cgroup filesystem is mounted."""
    if (ROOT / "cgroup.controllers").exists():
        return 2
    if (ROOT / "memory").is_dir():
        return 1
    return None


def _read_oom_kill(path: Path) -> int | None:
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        return None
    return 0


def _docker_cgroup_file(container_id: str, v1_controller: str, v1_file: str, v2_file: str) -> Path | None:
    """A file of a local container's cgroup: cgroup v1 (under its controller) or v2, with Docker's cgroupfs or
    systemd driver; None where the engine is not local."""
    groups = (Path("docker") / container_id, Path("system.slice") / f"docker-{container_id}.scope")
    candidates = [ROOT / v1_controller / g / v1_file for g in groups] + [ROOT / g / v2_file for g in groups]
    return next((p for p in candidates if p.exists()), None)


def docker_oom_count(container_id: str) -> int | None:
    """OOM kills so far in a local container's memory group; None if unknown."""
    path = _docker_cgroup_file(container_id, "memory", "memory.oom_control", "memory.events")
    return None if path is None else _read_oom_kill(path)


def docker_procs_file(container_id: str) -> Path | None:
    """`cgroup.procs` of a local container (host pids), or None where the engine is not local."""
    return _docker_cgroup_file(container_id, "pids", "cgroup.procs", "cgroup.procs")


def kill_pids_in(procs_file: Path, keep: set[int]) -> int:
    """SIGKILL every process listed in `procs_file` except `keep`, sweeping until none is left (a fork bomb
    respawns between sweeps, but the pids limit bounds it). Returns how many were killed."""
    killed = 0
    for _ in range(100):
        try:
            pids = {int(x) for x in procs_file.read_text().split()} - keep
        except (OSError, ValueError):
            return killed
        if not pids:
            return killed
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        time.sleep(0.01)
    return killed


@dataclass
class LimitGroup:
    """A cgroup holding one process sandbox; `enforced` says which limits the kernel will actually apply."""

    name: str
    dirs: list[Path] = field(default_factory=list)
    oom_file: Path | None = None
    enforced: dict[str, bool] = field(default_factory=dict)

    @property
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs]

    def oom_count(self) -> int:
        return (_read_oom_kill(self.oom_file) or 0) if self.oom_file else 0

    def pids(self) -> set[int]:
        found: set[int] = set()
        for f in self.procs_files:
            try:
                found |= {int(x) for x in f.read_text().split()}
            except (OSError, ValueError):
                pass
        return found

    def kill_all(self) -> None:
        """SIGKILL every process in the group, repeating while a fork bomb still spawns (bounded)."""
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)

    def remove(self) -> None:
        self.kill_all()
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def _write(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
        return True
    except OSError:
        return False


def _create_v1(name: str, memory_mb: int, pids: int, cpus: float) -> LimitGroup:
    group = LimitGroup(name)
    for ctrl in ("memory", "pids", "cpu"):
        d = ROOT / ctrl / "m3lab" / name
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            group.enforced[ctrl] = False
            continue
        group.dirs.append(d)
        if ctrl == "memory":
            ok = _write(d / "memory.limit_in_bytes", str(memory_mb << 20))
            if (d / "memory.memsw.limit_in_bytes").exists():
                _write(d / "memory.memsw.limit_in_bytes", str(memory_mb << 20))
            group.enforced["memory"] = ok
            group.oom_file = d / "memory.oom_control"
        elif ctrl == "pids":
            group.enforced["pids"] = _write(d / "pids.max", str(pids))
        else:
            ok = _write(d / "cpu.cfs_period_us", "100000")
            group.enforced["cpus"] = ok and _write(d / "cpu.cfs_quota_us", str(int(cpus * 100000)))
    return group


def _create_v2(name: str, memory_mb: int, pids: int, cpus: float) -> LimitGroup:
    group = LimitGroup(name)
    parent = ROOT / "m3lab"
    try:
        parent.mkdir(exist_ok=True)
        _write(ROOT / "cgroup.subtree_control", "+memory +pids +cpu")
        _write(parent / "cgroup.subtree_control", "+memory +pids +cpu")
        d = parent / name
        d.mkdir(exist_ok=True)
    except OSError:
        return LimitGroup(name, enforced={"memory": False, "pids": False, "cpus": False})
    group.dirs.append(d)
    group.enforced["memory"] = _write(d / "memory.max", str(memory_mb << 20))
    _write(d / "memory.swap.max", "0")
    group.enforced["pids"] = _write(d / "pids.max", str(pids))
    group.enforced["cpus"] = _write(d / "cpu.max", f"{int(cpus * 100000)} 100000")
    group.oom_file = d / "memory.events"
    return group


def create_group(name: str, memory_mb: int, pids: int, cpus: float) -> LimitGroup:
    """A limit group for one sandbox; limits that cannot be set are marked not enforced (never silent)."""
    v = version()
    if v == 1:
        return _create_v1(name, memory_mb, pids, cpus)
    if v == 2:
        return _create_v2(name, memory_mb, pids, cpus)
    return LimitGroup(name, enforced={"memory": False, "pids": False, "cpus": False})
