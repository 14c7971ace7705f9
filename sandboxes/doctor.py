"""`m3lab sandbox doctor`: which backend is active, the engine, the images, and which limits are enforced."""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field

from sandboxes import cgroups
from sandboxes.engine import EngineUnavailable, connect
from sandboxes.images import IMAGES, image_label, recipe_hash, tag_of
from sandboxes.process_backend import bwrap_available


@dataclass
class DoctorReport:
    backend: str
    """The backend `open_sandbox(backend="auto")` would pick now."""
    engine: str
    """Engine version, or why none answers."""
    images: dict[str, str] = field(default_factory=dict)
    """tag -> "current" / "stale (rebuild)" / "missing"."""
    limits: dict[str, str] = field(default_factory=dict)
    """limit -> how the active backend enforces it, or "NOT enforced"."""
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(v == "current" for v in self.images.values()) if self.backend == "docker" else bwrap_available()


DOCKER_LIMITS = {
    "memory": "cgroup memory limit (RAM+swap); OOM kill reported as reason=oom",
    "cpus": "CFS quota (nano_cpus)", "pids": "pids cgroup (pids_limit)", "tmpfs": "size-limited tmpfs /tmp",
    "file size": "RLIMIT_FSIZE (ulimit fsize)", "network": "network_mode=none (loopback only)",
    "filesystem": "read-only root, workspace at /work the only writable host path",
    "privileges": "non-root user, all capabilities dropped, no-new-privileges, seccomp default profile",
    "wall time": "timeout per exec; container exits at its lifetime (sleep under init)",
}


def _image_states(client) -> dict[str, str]:
    states = {}
    for name in IMAGES:
        found = image_label(client, tag_of(name))
        if found is None:
            states[tag_of(name)] = "missing (m3lab sandbox build)"
            continue
        if name == "default":
            wanted = {recipe_hash(name, "debootstrap"), recipe_hash(name, "dockerfile")}
        else:
            base = image_label(client, tag_of("default"))
            wanted = {recipe_hash(name, "dockerfile", base[0] if base else "")}
        states[tag_of(name)] = "current" if found[1] in wanted else "stale (m3lab sandbox build rebuilds it)"
    return states


def _process_limits() -> dict[str, str]:
    probe = cgroups.create_group("proc-0-doctor", 64, 64, 1.0)
    enforced = dict(probe.enforced)
    probe.remove()
    how = {k: ("cgroup" if v else "NOT enforced by cgroup (prlimit fallback)") for k, v in enforced.items()}
    return {**how, "tmpfs": "size-limited tmpfs /tmp", "file size": "RLIMIT_FSIZE (prlimit)",
            "network": "new network namespace (loopback only)",
            "filesystem": "host system dirs read-only, workspace at /work, everything else invisible",
            "privileges": "user namespace uid 65534, all capabilities dropped, NO seccomp filter (weaker)",
            "wall time": "host-side timeout, kill of bwrap + cgroup"}


def diagnose() -> DoctorReport:
    """Probe the engine, images, bubblewrap and cgroups; starts nothing long-lived."""
    try:
        client = connect(timeout_s=5)
        engine = f"Docker {client.version().get('Version', '?')} (API {client.api.api_version})"
        report = DoctorReport("docker", engine, _image_states(client), dict(DOCKER_LIMITS))
        if not shutil.which("setfacl"):
            report.notes.append("setfacl missing: workspaces are made world-writable instead (apt-get install acl)")
    except EngineUnavailable as exc:
        report = DoctorReport("process", f"none: {exc}", {}, _process_limits())
        report.notes.append("WARNING: process backend: isolation is weaker than Docker")
    if bwrap_available():
        ver = subprocess.run(["bwrap", "--version"], capture_output=True, text=True).stdout.strip()
        report.notes.append(f"fallback available: {ver}, cgroup v{cgroups.version()}")
    else:
        report.notes.append("bubblewrap missing: no fallback without Docker (apt-get install bubblewrap)")
    return report
