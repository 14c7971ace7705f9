"""Host side of the in-container exec agent (see agent_main.py): one long-lived `docker exec` whose stdin
and stdout carry JSON lines, so a command costs a fork in the container instead of a runc exec."""
from __future__ import annotations

import base64
import json
import select
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import docker

SOURCE = Path(__file__).with_name("agent_main.py")
START_TIMEOUT_S = 20.0
BOOT = "import sys, json; exec(compile(json.loads(sys.stdin.readline()), 'm3lab-agent', 'exec'))"


class AgentDied(RuntimeError):
    """The agent's stream ended or stalled (killed by the command, OOM, or the container is gone)."""


class ExecAgent:
    """One agent process in one container; not thread-safe (the sandbox serialises requests)."""

    def __init__(self, client: "docker.DockerClient", container_id: str, user: str) -> None:
        api = client.api
        self.exec_id = api.exec_create(container_id, ["python3", "-u", "-c", BOOT], stdin=True, stdout=True,
                                       stderr=True, user=user, workdir="/")["Id"]
        sock = api.exec_start(self.exec_id, socket=True)
        self._sock_io = sock
        self._raw = getattr(sock, "_sock", sock)
        self._stdout = b""
        self._stderr = b""
        # The agent's source travels as the first stdin line: nothing to write into the read-only image.
        self._raw.sendall(json.dumps(SOURCE.read_text()).encode() + b"\n")
        hello = self._read_line(time.monotonic() + START_TIMEOUT_S)
        if "ready" not in hello:
            raise AgentDied(f"agent did not start: {hello}")
        self.host_pid = int(api.exec_inspect(self.exec_id).get("Pid") or 0)
        """Host pid of the agent, so the stray sweep after each command leaves it alone."""

    def _recv_exactly(self, n: int, deadline: float) -> bytes:
        data = b""
        while len(data) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AgentDied("agent did not answer in time")
            ready, _, _ = select.select([self._raw], [], [], left)
            if not ready:
                continue
            chunk = self._raw.recv(n - len(data))
            if not chunk:
                tail = self._stderr[-500:].decode(errors="replace")
                raise AgentDied(f"agent stream ended {tail}".strip())
            data += chunk
        return data

    def _read_line(self, deadline: float) -> dict[str, Any]:
        """Next JSON line of the agent's stdout (Docker multiplexes stdout/stderr in 8-byte-header frames)."""
        while b"\n" not in self._stdout:
            stream, size = struct.unpack(">BxxxL", self._recv_exactly(8, deadline))
            payload = self._recv_exactly(size, deadline)
            if stream == 2:
                self._stderr = (self._stderr + payload)[-4096:]
            else:
                self._stdout += payload
        line, _, self._stdout = self._stdout.partition(b"\n")
        return json.loads(line)

    def run(self, argv: list[str], env: dict[str, str], cwd: str, timeout_s: float,
            kill_after_s: float) -> tuple[int, bytes, bytes, bool]:
        """(exit code, stdout, stderr, timed out) of one command."""
        req = {"argv": argv, "env": env, "cwd": cwd, "timeout": timeout_s, "kill_after": kill_after_s}
        try:
            self._raw.sendall(json.dumps(req).encode() + b"\n")
        except OSError as exc:
            raise AgentDied(f"agent stdin closed: {exc}") from exc
        resp = self._read_line(time.monotonic() + timeout_s + kill_after_s + 10)
        return (int(resp["code"]), base64.b64decode(resp["out"]), base64.b64decode(resp["err"]),
                bool(resp["timed_out"]))

    def close(self) -> None:
        for closer in (self._raw.close, self._sock_io.close):
            try:
                closer()
            except OSError:
                pass
