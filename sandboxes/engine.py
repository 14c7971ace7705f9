"""Finding the Docker engine. The docker SDK is imported here only, and only when asked for."""
from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import docker

log = logging.getLogger(__name__)

LABEL = "m3lab.sandbox"
"""Label on every container this package creates (value "1"); the reaper only ever touches these."""
LABEL_RUN = "m3lab.run_id"
LABEL_OWNER_PID = "m3lab.owner_pid"
LABEL_OWNER_BOOT = "m3lab.owner_boot"
LABEL_DEADLINE = "m3lab.deadline"
LABEL_POOL = "m3lab.pool"
LABEL_RECIPE = "m3lab.recipe"
"""Image label: hash of the recipe the image was built from."""


class EngineUnavailable(RuntimeError):
    """No Docker engine answers (daemon not running, no socket, no permission)."""


def connect(timeout_s: float = 10.0) -> docker.DockerClient:
    """A client for the local engine, or `EngineUnavailable` with the reason.

    `use_context=False` would be nicer but is not in every SDK version; `from_env` honours DOCKER_HOST,
    which is what users expect."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError as exc:  # e.g. a GPU host whose environment lacks the SDK: no engine for us
        raise EngineUnavailable(f"the docker SDK is not installed ({exc})") from exc
    try:
        client = docker.from_env(timeout=int(timeout_s))
        client.ping()
    except DockerException as exc:
        raise EngineUnavailable(f"no Docker engine answers: {exc}") from exc
    return client


@lru_cache(maxsize=1)
def shared_client() -> docker.DockerClient:
    """One client per process for the hot path (creating a client costs ~10 ms)."""
    return connect()


def engine_available() -> bool:
    """True when a Docker engine answers `ping`."""
    try:
        shared_client()
    except EngineUnavailable as exc:
        log.debug("%s", exc)
        shared_client.cache_clear()
        return False
    return True


def boot_id() -> str:
    """This host's boot id: with the pid it names a process uniquely (pids are reused across boots)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def pid_alive(pid: int) -> bool:
    """True while process `pid` runs. A zombie (ended, not yet reaped by its parent) is dead: it runs no code,
    so a sandbox owner or a model server in that state is gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    try:
        # /proc/<pid>/stat is "pid (comm) state ...", and comm may itself contain ")".
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False  # it ended between the two looks
    return state != "Z"
