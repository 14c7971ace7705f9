"""Isolation for every line of model-written code: `open_sandbox(spec)` returns a `Sandbox`.

Backends: "docker" (a locked-down container, warm-pooled on request) when an engine answers, else "process"
(bubblewrap + cgroups, weaker isolation, with a logged warning). See README.md.
"""
from __future__ import annotations

import logging
from typing import Literal

from sandboxes.base import ExecResult, InvalidSpec, Sandbox, SandboxError, SandboxSpec, inside_path

__all__ = ["ExecResult", "InvalidSpec", "Sandbox", "SandboxError", "SandboxSpec", "default_backend",
           "inside_path", "open_sandbox", "startup_problems"]
log = logging.getLogger(__name__)
Backend = Literal["auto", "docker", "process"]
_warned = False
_reaped = False


def default_backend() -> str:
    """"docker" when an engine answers `ping`, else "process"."""
    from sandboxes.engine import engine_available

    return "docker" if engine_available() else "process"


def _open_docker(spec: SandboxSpec, pool: bool) -> Sandbox:
    from sandboxes.docker_backend import DockerSandbox, start_container
    from sandboxes.engine import EngineUnavailable, shared_client
    from sandboxes.pool import shared_pool

    try:
        client = shared_client()
    except EngineUnavailable as exc:
        raise SandboxError(str(exc)) from exc
    _reap_once(client)
    if not pool:
        return DockerSandbox(spec, start_container(client, spec), client)
    warm = shared_pool(client)
    sandbox = warm.acquire(spec)
    if sandbox is None:
        sandbox = DockerSandbox(spec, start_container(client, spec), client)
    warm.refill_async(spec)
    return sandbox


def startup_problems(spec: SandboxSpec, backend: Backend | str = "auto") -> list[str]:
    """Why `spec` could not start on `backend`, found without starting anything: every spec problem, no
    engine for a forced Docker backend, an image the engine does not have. Empty when it can start."""
    from sandboxes.validate import spec_problems

    if backend not in ("auto", "docker", "process"):
        return [f"unknown sandbox backend {backend!r}; use auto, docker or process"]
    problems = spec_problems(spec)
    chosen = default_backend() if backend == "auto" else backend
    if chosen != "docker":
        return problems
    from docker.errors import DockerException, ImageNotFound

    from sandboxes.engine import EngineUnavailable, shared_client

    try:
        shared_client().images.get(spec.image)
    except EngineUnavailable as exc:
        problems.append(str(exc))
    except ImageNotFound:
        problems.append(f"unknown image {spec.image!r}: build it with `m3lab sandbox build` or pull it")
    except DockerException as exc:  # e.g. a malformed reference ("no such:img")
        problems.append(f"unusable image {spec.image!r}: {exc}")
    return problems


def _reap_once(client: object) -> None:
    """On a process's first Docker sandbox, remove in the background what crashed owners left behind."""
    global _reaped
    if _reaped:
        return
    _reaped = True
    import threading

    from sandboxes.reaper import ReapResult, reap_containers

    def run() -> None:
        try:
            result = ReapResult()
            reap_containers(client, result)  # type: ignore[arg-type]
            if result.removed:
                log.info("reaped %d sandbox containers of dead owners", len(result.removed))
        except Exception as exc:  # cleanup is best effort; `m3lab sandbox reap` reports errors
            log.debug("background reap failed: %s", exc)

    threading.Thread(target=run, daemon=True, name="m3lab-reaper").start()


def open_sandbox(spec: SandboxSpec, backend: Backend | str = "auto", pool: bool = False) -> Sandbox:
    """A running sandbox for `spec`. "auto" picks Docker when an engine answers, else the process sandbox
    (logging that isolation is weaker); "docker"/"process" force one. By default a fresh container is started
    and nothing stays behind when it closes; `pool=True` (for callers that open the same spec again) takes a
    pre-started one from the warm pool and starts its replacement in the background. Bad specs raise
    `InvalidSpec` before anything starts."""
    global _warned
    from sandboxes.validate import validate_spec

    if backend not in ("auto", "docker", "process"):
        raise InvalidSpec(f"unknown sandbox backend {backend!r}; use auto, docker or process")
    validate_spec(spec)  # the one check, for both backends and the warm pool's refills
    chosen = default_backend() if backend == "auto" else backend
    if chosen == "docker":
        return _open_docker(spec, pool)
    if backend == "auto" and not _warned:
        log.warning("no Docker engine answers: using the process sandbox (bubblewrap); isolation is WEAKER "
                    "(shared kernel without seccomp, limits only where cgroups are writable)")
        _warned = True
    from sandboxes.process_backend import ProcessSandbox

    return ProcessSandbox(spec)
