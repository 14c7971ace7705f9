"""Host side of the exec agent (see agent_main.py): one long-lived python inside the sandbox that spawns each
command, so a command costs a fork instead of a runc exec (Docker, ~85 ms) or a fresh set of namespaces
(bubblewrap). Requests and answers are JSON lines; the agent's source is sent as the first line, so nothing
is written into the (read-only) sandbox.

- `ExecAgent`: through one `docker exec` whose stdin/stdout is the engine's hijacked socket (stdout and
  stderr multiplexed in 8-byte-header frames).
- `PipeAgent`: through the stdin/stdout pipes of a bubblewrap process.
"""
from __future__ import annotations

import base64
import json
import os
import select
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

if TYPE_CHECKING:
    import docker

SOURCE = Path(__file__).with_name("agent_main.py")
START_TIMEOUT_S = 20.0
BOOT = "import sys, json; exec(compile(json.loads(sys.stdin.readline()), 'm3lab-agent', 'exec'))"
"""The agent's command line: reads its own source from stdin."""
ANSWER_GRACE_S = 10.0
"""How long past the command's deadline the host waits for the agent's answer before declaring it dead."""
MAX_LINE_BYTES = 16 << 20
"""An answer holds at most ~2 MiB of each stream (agent_main.CAP), base64: a longer line is not the agent's."""


class AgentDied(RuntimeError):
    """The agent's stream ended or stalled (killed by the command, OOM, or the sandbox is gone)."""


class LineAgent:
    """The protocol, over a transport given by `_send` and `_recv`; `close` ends the agent."""

    def __init__(self) -> None:
        self._stdout = bytearray()

    def _send(self, data: bytes) -> None:
        raise NotImplementedError

    def _recv(self, deadline: float) -> bytes:
        """Next chunk of the agent's stdout; raises AgentDied at EOF or past the deadline."""
        raise NotImplementedError

    def _handshake(self) -> int:
        self._send(json.dumps(SOURCE.read_text()).encode() + b"\n")
        hello = self._read_line(time.monotonic() + START_TIMEOUT_S)
        if "ready" not in hello:
            raise AgentDied(f"agent did not start: {hello}")
        return int(hello["ready"])

    def close(self) -> None:
        raise NotImplementedError

    def _read_line(self, deadline: float) -> dict[str, Any]:
        seen = 0
        while (end := self._stdout.find(b"\n", seen)) < 0:
            if len(self._stdout) > MAX_LINE_BYTES:
                raise AgentDied(f"agent sent a line longer than {MAX_LINE_BYTES} bytes")
            seen = len(self._stdout)
            self._stdout += self._recv(deadline)
        line = bytes(self._stdout[:end])
        del self._stdout[:end + 1]
        try:
            return json.loads(line)
        except ValueError as exc:
            raise AgentDied(f"agent sent garbage: {line[:200]!r}") from exc

    def run(self, argv: list[str], env: dict[str, str], cwd: str, timeout_s: float,
            kill_after_s: float) -> tuple[int, bytes, bytes, bool]:
        """(exit code, stdout, stderr, timed out) of one command."""
        req = {"argv": argv, "env": env, "cwd": cwd, "timeout": timeout_s, "kill_after": kill_after_s}
        try:
            self._send(json.dumps(req).encode() + b"\n")
        except OSError as exc:
            raise AgentDied(f"agent stdin closed: {exc}") from exc
        resp = self._read_line(time.monotonic() + timeout_s + kill_after_s + ANSWER_GRACE_S)
        return (int(resp["code"]), base64.b64decode(resp["out"]), base64.b64decode(resp["err"]),
                bool(resp["timed_out"]))


def _wait_readable(fd: Any, deadline: float) -> None:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AgentDied("agent did not answer in time")
        if select.select([fd], [], [], left)[0]:
            return


class ExecAgent(LineAgent):
    """The agent in a container, through one `docker exec`. Not thread-safe (the sandbox serialises)."""

    def __init__(self, client: docker.DockerClient, container_id: str, user: str) -> None:
        super().__init__()
        api = client.api
        self.exec_id = api.exec_create(container_id, ["python3", "-u", "-c", BOOT], stdin=True, stdout=True,
                                       stderr=True, user=user, workdir="/")["Id"]
        sock = api.exec_start(self.exec_id, socket=True)
        self._sock_io = sock
        self._raw = getattr(sock, "_sock", sock)
        self._stderr = b""
        self._handshake()
        self.host_pid = int(api.exec_inspect(self.exec_id).get("Pid") or 0)
        """Host pid of the agent, so the stray sweep after each command leaves it alone."""

    def _send(self, data: bytes) -> None:
        self._raw.sendall(data)

    def _recv_exactly(self, n: int, deadline: float) -> bytes:
        data = b""
        while len(data) < n:
            _wait_readable(self._raw, deadline)
            chunk = self._raw.recv(n - len(data))
            if not chunk:
                tail = self._stderr[-500:].decode(errors="replace")
                raise AgentDied(f"agent stream ended {tail}".strip())
            data += chunk
        return data

    def _recv(self, deadline: float) -> bytes:
        while True:
            stream, size = struct.unpack(">BxxxL", self._recv_exactly(8, deadline))
            payload = self._recv_exactly(size, deadline)
            if stream != 2:
                return payload
            self._stderr = (self._stderr + payload)[-4096:]

    def close(self) -> None:
        for closer in (self._raw.close, self._sock_io.close):
            try:
                closer()
            except OSError:
                pass


class PipeAgent(LineAgent):
    """The agent as the command of a bubblewrap process (`argv`), talking over its stdin/stdout pipes.
    Its stderr goes to a file so a chatty failure can never block it."""

    def __init__(self, argv: list[str], stderr_path: Path) -> None:
        super().__init__()
        self._stderr_path = stderr_path
        with stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                         env={"PATH": "/usr/local/bin:/usr/bin:/bin"}, start_new_session=True)
        try:
            self.pid_inside = self._handshake()
        except (AgentDied, OSError) as exc:
            self.close()
            raise AgentDied(f"{exc}: {self.stderr_tail()}") from exc

    def stderr_tail(self) -> str:
        try:
            return self._stderr_path.read_bytes()[-500:].decode(errors="replace").strip()
        except OSError:
            return ""

    def _send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def _recv(self, deadline: float) -> bytes:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        _wait_readable(fd, deadline)
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            raise AgentDied(f"agent stream ended {self.stderr_tail()}".strip())
        return chunk

    def close(self) -> None:
        """Kill bubblewrap; --die-with-parent takes the agent's pid namespace down with it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass


class ExecGate:
    """How both backends route an exec: through the sandbox's agent when it is free (one request at a time),
    else the backend's slower fallback; when the last running exec ends, `sweep` kills whatever the commands
    left behind, so nothing a command starts outlives it."""

    def __init__(self, sweep: Callable[[], object]) -> None:
        self._sweep = sweep
        self._lock = threading.Lock()
        self._agent_lock = threading.Lock()
        self._inflight = 0

    def run(self, start_agent: Callable[[], T | None], via_agent: Callable[[T], R], fallback: Callable[[], R]) -> R:
        with self._lock:
            self._inflight += 1
        try:
            if self._agent_lock.acquire(blocking=False):
                try:
                    agent = start_agent()
                    if agent is not None:
                        return via_agent(agent)
                finally:
                    self._agent_lock.release()
            return fallback()
        finally:
            with self._lock:
                self._inflight -= 1
                last = self._inflight == 0
            if last:
                self._sweep()
