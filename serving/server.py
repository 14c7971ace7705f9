"""Start, find and stop detached vLLM servers.

A started server runs in its own session (so it outlives `m3lab serve` and a stop can signal its whole process
group: API server, engine core, workers) and leaves a state file `server-<port>.json` (pid, port, model, log) in
the configured state folder. Starting on a port where our model already answers reuses that server.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from sandboxes.engine import pid_alive
from serving.client import EndpointUnavailable
from serving.config import ServingConfig
from serving.launch import LaunchPlan
from serving.probe import port_open, served_models

LOG_TAIL_LINES = 40


class ServerError(RuntimeError):
    """Base of the serving errors the CLI reports without a traceback."""


class ServerStartError(ServerError):
    """vLLM exited during start-up or did not become ready in time (the message carries the log tail)."""


class PortInUse(ServerError):
    """Something that is not our server listens on the requested port."""


class ServerNotRunning(ServerError):
    """No server started by `m3lab serve` is known on that port."""


@dataclass(frozen=True)
class ServerState:
    """Contents of the state file of one started server."""

    pid: int
    host: str
    port: int
    model: str
    """Served model name."""
    log_path: str
    profile: str
    started_at: float
    argv: list[str]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"


@dataclass(frozen=True)
class StartResult:
    base_url: str
    model: str
    reused: bool
    """True when a server already answering on the port was reused instead of starting one."""
    ready_s: float
    """Seconds from launch (or from the start of the wait, when reused) until the model answered."""
    state: ServerState | None
    """None when the reused server was not started by `m3lab serve` (no state file)."""


def state_path(config: ServingConfig, port: int) -> Path:
    return config.state_dir / f"server-{port}.json"


def log_path(config: ServingConfig, port: int) -> Path:
    return config.state_dir / f"server-{port}.log"


def read_state(config: ServingConfig, port: int) -> ServerState | None:
    path = state_path(config, port)
    if not path.is_file():
        return None
    try:
        return ServerState(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        path.unlink(missing_ok=True)  # unreadable state is useless; the port probe still protects the port
        return None


def _write_state(config: ServingConfig, state: ServerState) -> None:
    path = state_path(config, state.port)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=1))
    tmp.replace(path)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.is_file():
        return "(no log written)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _serves(base_url: str, model: str) -> bool:
    try:
        return any(m.id == model for m in served_models(base_url, timeout_s=3.0))
    except EndpointUnavailable:
        return False


def wait_ready(base_url: str, model: str, pid: int, timeout_s: float, log: Path) -> float:
    """Poll until `model` is listed; raise `ServerStartError` (with the log tail) on exit or timeout."""
    started = time.monotonic()
    while True:
        if _serves(base_url, model):
            return time.monotonic() - started
        if not pid_alive(pid):
            raise ServerStartError(f"vLLM (pid {pid}) exited during start-up; last lines of {log}:\n{log_tail(log)}")
        if time.monotonic() - started > timeout_s:
            raise ServerStartError(f"vLLM (pid {pid}) did not become ready within {timeout_s:g} s; "
                                   f"last lines of {log}:\n{log_tail(log)}")
        time.sleep(1.0)


def _live_state(plan: LaunchPlan, config: ServingConfig) -> ServerState | None:
    """The state of our live server of this model on the port (stale files are removed), else None."""
    state = read_state(config, plan.port)
    if state is not None and not _state_is_live(state):
        state_path(config, plan.port).unlink(missing_ok=True)
        return None
    if state is not None and state.model != plan.served_model_name:
        raise PortInUse(f"port {plan.port} belongs to the m3lab server of {state.model!r} (pid {state.pid}), "
                        f"not {plan.served_model_name!r}; stop it (`m3lab serve stop --port {plan.port}`) "
                        "or pick another port with --port N")
    return state


def _state_is_live(state: ServerState) -> bool:
    """The state's pid is alive and still the server it names (pids get reused after a crash or reboot)."""
    if not pid_alive(state.pid):
        return False
    try:
        cmdline = Path(f"/proc/{state.pid}/cmdline").read_bytes().decode(errors="replace").lower()
    except OSError:
        return False
    # Lenient on purpose: vLLM may retitle its processes, but the title keeps "vllm" or the model name.
    return state.model.lower() in cmdline or "vllm" in cmdline


def _check_installed(plan: LaunchPlan) -> None:
    python = Path(plan.argv[0])
    if not python.is_file():
        raise ServerStartError(f"no vLLM environment at {python.parent.parent}; run scripts/setup/vllm.sh")
    local = plan.model.startswith(("/", "~", "."))
    if local and not Path(plan.model).expanduser().exists():
        raise ServerStartError(f"model folder {plan.model} is missing; run scripts/setup/vllm.sh to convert it")


@contextmanager
def _port_lock(config: ServingConfig, port: int) -> Iterator[None]:
    """Serialise check-then-spawn per port: two `serve` calls at once start one server; the second waits on it."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    with (config.state_dir / f"server-{port}.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _spawn(plan: LaunchPlan, config: ServingConfig, profile: str) -> ServerState:
    log = log_path(config, plan.port)
    with log.open("w") as fh:
        proc = subprocess.Popen(plan.argv, env={**os.environ, **plan.env}, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=config.state_dir)
    state = ServerState(pid=proc.pid, host=plan.host, port=plan.port, model=plan.served_model_name,
                        log_path=str(log), profile=profile, started_at=time.time(), argv=list(plan.argv))
    _write_state(config, state)
    return state


def start_server(plan: LaunchPlan, config: ServingConfig, profile: str, timeout_s: float | None = None) -> StartResult:
    """Start `plan` detached and wait until it serves its model, or reuse a server already doing so."""
    timeout = config.ready_timeout_s if timeout_s is None else timeout_s
    with _port_lock(config, plan.port):
        state = _live_state(plan, config)
        reused = state is not None
        if state is None:
            if port_open(plan.host, plan.port):
                if _serves(plan.base_url, plan.served_model_name):
                    return StartResult(plan.base_url, plan.served_model_name, reused=True, ready_s=0.0, state=None)
                raise PortInUse(f"port {plan.port} on {plan.host} is in use by another program (not a server of "
                                f"{plan.served_model_name!r}); pick a free one with --port N")
            _check_installed(plan)
            state = _spawn(plan, config, profile)
    try:
        # A reused server may still be starting (a second `serve` right after the first): wait for it too.
        ready = wait_ready(plan.base_url, state.model, state.pid, timeout, Path(state.log_path))
    except (ServerStartError, KeyboardInterrupt):
        if not reused:  # a server nobody waited for to the end is not left behind (Ctrl-C stops it too)
            _terminate(state.pid)
            state_path(config, plan.port).unlink(missing_ok=True)
        raise
    return StartResult(plan.base_url, state.model, reused=reused, ready_s=ready, state=state)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child: init reaps it


def _terminate(pid: int, grace_s: float = 20.0) -> bool:
    """SIGTERM the server's process group, SIGKILL it after `grace_s`; True when it had to be killed."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_alive(pid):
            break
        time.sleep(0.3)
    killed = pid_alive(pid)
    try:
        # Also catches engine/worker processes that outlive the API server.
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)
    _wait_group_gone(pid, timeout_s=5.0)
    return killed


def _wait_group_gone(pgid: int, timeout_s: float) -> None:
    """Give killed group members a moment to disappear, so the port and memory are free when we return.

    Bounded: zombies of a container whose init does not reap stay group members forever."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def stop_server(config: ServingConfig, port: int) -> ServerState:
    """Stop the server `m3lab serve` started on `port` and remove its state file."""
    state = read_state(config, port)
    if state is None:
        hint = " (something answers there, but it was not started by `m3lab serve`)" if port_open(config.host, port) else ""
        raise ServerNotRunning(f"no m3lab server known on port {port}{hint}")
    _terminate(state.pid)
    state_path(config, port).unlink(missing_ok=True)
    return state


def known_servers(config: ServingConfig) -> list[ServerState]:
    """States of the servers started by `m3lab serve` that are still alive (stale files are removed)."""
    if not config.state_dir.is_dir():
        return []
    alive = []
    for path in sorted(config.state_dir.glob("server-*.json")):
        state = read_state(config, int(path.stem.split("-", 1)[1]))
        if state is not None and _state_is_live(state):
            alive.append(state)
        else:
            path.unlink(missing_ok=True)
    return alive
