"""The exec path both backends share: the checks before a command (sandbox open, lifetime left, argv), routing it
through the exec agent or the backend's fallback under the workspace quota, and what a command that takes the
agent down leaves behind: an observation (exit 137 with a note), never an exception, and an agent restarted on
the next exec until it failed `MAX_AGENT_FAILURES` times."""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Self

from sandboxes import quota
from sandboxes.agent import AgentDied, ExecGate, LineAgent
from sandboxes.base import ExecResult, SandboxError, SandboxSpec
from sandboxes.outcome import KILLED_EXIT, TailBuffer, make_result

KILL_GRACE_S = 2
"""After the TERM at the deadline, KILL follows this much later."""
MAX_AGENT_FAILURES = 3
"""After this many agent deaths or failed starts, the sandbox uses its fallback (one process per exec) only."""


def command_argv(cmd: str | Sequence[str]) -> list[str]:
    """A string runs under `bash -c`; a sequence is the argv itself."""
    if isinstance(cmd, str):
        return ["bash", "-c", cmd]
    argv = [str(c) for c in cmd]
    if not argv:
        raise SandboxError("empty command")
    return argv


def oom_grew(before: int | None, after: int | None) -> bool:
    """Did the OOM-kill counter grow (None: the backend cannot read it here)?"""
    return before is not None and after is not None and after > before


class GatedSandbox:
    """Base of both backends. A subclass sets `spec`, `started`, `_gate` and `_quota` in its constructor and
    implements `start_agent`, `_run_fallback`, `_oom_count` and `_after_agent_death`."""

    spec: SandboxSpec
    started: float
    _gate: ExecGate
    _quota: quota.Watcher
    _closed: bool = False
    _agent: LineAgent | None = None
    _agent_failures: int = 0

    def start_agent(self) -> LineAgent | None:
        """The running agent, starting it when none runs; None when it cannot (then the fallback runs)."""
        raise NotImplementedError

    def _run_fallback(self, argv: list[str], env: dict[str, str], workdir: str, timeout: float) -> ExecResult:
        """Run one command without the agent."""
        raise NotImplementedError

    def _oom_count(self) -> int | None:
        """The sandbox's OOM-kill counter (None where it cannot be read)."""
        raise NotImplementedError

    def _after_agent_death(self) -> None:
        """Clean up after a command took the agent down (the agent is already closed and forgotten)."""
        raise NotImplementedError

    def _release(self) -> None:
        """Free what the sandbox holds (container, limit group, mounts); the agent is already closed."""
        raise NotImplementedError

    def _exec_workdir(self, workdir: str) -> str:
        return workdir

    def close(self) -> None:
        """End the sandbox: stop the quota watcher and the agent, then release the rest (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._quota.stop()
        if self._agent is not None:
            self._agent.close()
            self._agent = None
        self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exec(self, cmd: str | Sequence[str], timeout_s: float | None = None, env: Mapping[str, str] | None = None,
             workdir: str = "/work") -> ExecResult:
        if self._closed:
            raise SandboxError("sandbox is closed")
        remaining = self.spec.lifetime_s - (time.monotonic() - self.started)
        timeout = min(timeout_s or self.spec.exec_timeout_s, remaining)
        if timeout <= 0:
            raise SandboxError(f"sandbox passed its lifetime of {self.spec.lifetime_s:g} s")
        workdir = self._exec_workdir(workdir)
        argv, env_ = command_argv(cmd), dict(env or {})
        with self._quota.running():
            result = self._gate.run(
                self.start_agent,
                lambda agent: self._run_agent(agent, argv, env_, workdir, timeout),
                lambda: self._run_fallback(argv, env_, workdir, timeout))
        return quota.enforce(self.spec, result)

    def _run_agent(self, agent: LineAgent, argv: list[str], env: dict[str, str], workdir: str,
                   timeout: float) -> ExecResult:
        oom_before = self._oom_count()
        out, err = TailBuffer(), TailBuffer()
        start = time.monotonic()
        try:
            code, stdout, stderr, timed_out = agent.run(argv, env, workdir, timeout, KILL_GRACE_S)
        except AgentDied as exc:
            self._agent = None
            self._agent_failures += 1
            agent.close()
            self._after_agent_death()
            err.write(f"[m3lab sandbox] the command took the exec agent down with it ({exc})".encode())
            oom = oom_grew(oom_before, self._oom_count())
            return make_result(KILLED_EXIT, out, err, time.monotonic() - start, timeout, oom)
        out.write(stdout)
        err.write(stderr)
        oom = oom_grew(oom_before, self._oom_count())
        return make_result(code, out, err, time.monotonic() - start, timeout, oom, timed_out)
