"""Removing what crashed runs leave behind: containers whose owner process is gone or whose lifetime is over,
and the process backend's cgroups and /tmp mounts of dead owners. Only objects this package labelled or named
are ever touched."""
from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sandboxes.cgroups import ROOT
from sandboxes.docker_backend import remove_container
from sandboxes.engine import LABEL, LABEL_DEADLINE, LABEL_OWNER_BOOT, LABEL_OWNER_PID, boot_id, pid_alive
from sandboxes.process_backend import RUNTIME_DIR

if TYPE_CHECKING:
    import docker

_PROC_NAME = re.compile(r"^proc-(\d+)-[0-9a-f]+$")


@dataclass
class ReapResult:
    removed: list[str] = field(default_factory=list)
    """Container ids (short) and process-sandbox names removed."""
    kept: int = 0
    """Sandboxes left alone because their owner is alive and their lifetime not over."""


def _container_dead(labels: dict[str, str], status: str, now: float) -> str | None:
    """Why a container should go, or None to keep it."""
    if status in ("exited", "dead", "created"):
        return status
    if labels.get(LABEL_DEADLINE, "").isdigit() and int(labels[LABEL_DEADLINE]) < now:
        return "lifetime over"
    if labels.get(LABEL_OWNER_BOOT) != boot_id():
        return "owner from another boot"
    pid = labels.get(LABEL_OWNER_PID, "")
    if not pid.isdigit() or not pid_alive(int(pid)):
        return "owner gone"
    return None


def reap_containers(client: docker.DockerClient, result: ReapResult) -> None:
    now = time.time()
    for container in client.containers.list(all=True, filters={"label": f"{LABEL}=1"}):
        if _container_dead(container.labels, container.status, now) is None:
            result.kept += 1
            continue
        remove_container(container)
        result.removed.append(container.short_id)


def reap_process_leftovers(result: ReapResult) -> None:
    """cgroups and /tmp tmpfs mounts named proc-<pid>-* whose pid is gone."""
    dirs = list(ROOT.glob("*/m3lab/proc-*")) + list(ROOT.glob("m3lab/proc-*"))
    if RUNTIME_DIR.is_dir():
        dirs += list(RUNTIME_DIR.glob("proc-*"))
    for d in dirs:
        m = _PROC_NAME.match(d.name)
        if m is None or pid_alive(int(m.group(1))):
            continue
        if d.parent == RUNTIME_DIR:
            subprocess.run(["umount", "-l", str(d)], capture_output=True)
            subprocess.run(["rm", "-rf", "--one-file-system", str(d)], capture_output=True)
        else:
            for pid in (d / "cgroup.procs").read_text().split() if (d / "cgroup.procs").exists() else []:
                try:
                    os.kill(int(pid), 9)
                except ProcessLookupError:
                    pass
            try:
                d.rmdir()
            except OSError:
                continue
        if d.name not in result.removed:
            result.removed.append(d.name)


def reap(client: docker.DockerClient | None = None) -> ReapResult:
    """Remove leftovers of dead owners on both backends; `client=None` skips Docker."""
    result = ReapResult()
    if client is not None:
        reap_containers(client, result)
    reap_process_leftovers(result)
    return result
