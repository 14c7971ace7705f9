"""Letting the sandbox's unprivileged user write the host workspace without changing its owner.

The workspace is a git repository owned by the orchestrator's user (often root); chowning it to the sandbox
user would trip git's "dubious ownership" check. A POSIX ACL (`setfacl`, package `acl`) grants the sandbox uid
read-write on what exists now and, through the default ACL, on everything created later.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from sandboxes.base import SandboxError

log = logging.getLogger(__name__)
_granted: set[tuple[str, int]] = set()


def grant_workspace(path: Path, uid: int) -> None:
    """Make `path` readable and writable by `uid` (once per process and path)."""
    key = (str(Path(path).resolve()), uid)
    if key in _granted:
        return
    st = os.stat(path)
    if st.st_uid == uid:
        _granted.add(key)
        return
    if shutil.which("setfacl"):
        cmd = ["setfacl", "-R", "-m", f"u:{uid}:rwX", "-m", f"d:u:{uid}:rwX", str(path)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SandboxError(f"could not grant uid {uid} access to workspace {path}: {proc.stderr.strip()}")
    else:
        # Weaker fallback: world-writable. The workspace lives under runs/, not a shared folder.
        log.warning("setfacl missing (apt-get install acl): making workspace %s world-writable", path)
        subprocess.run(["chmod", "-R", "a+rwX", str(path)], check=True)
    _granted.add(key)
