"""The exec agent on both backends: fast round trips, survival of hostile commands, and the per-command path
(docker exec / a fresh bubblewrap) it falls back to, exercised directly so both paths stay tested."""
from __future__ import annotations

import threading

import pytest

from sandboxes import Sandbox
from sandboxes.execpath import MAX_AGENT_FAILURES
from tests.sandboxes.conftest import Factory

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def sb(sandbox_factory: Factory) -> Sandbox:
    """A sandbox of the parametrized backend (conftest.backend)."""
    return sandbox_factory(exec_timeout_s=30)


def test_execs_are_served_by_the_agent(sb: Sandbox) -> None:
    """Commands go through the in-sandbox agent (the fast path; its speed is measured by
    benchmarks/sandbox_bench.py, not asserted here)."""
    for i in range(30):
        assert sb.exec(["echo", str(i)]).stdout == f"{i}\n"
    assert sb._agent is not None


def test_agent_survives_kill_all_and_sandbox_keeps_working(sb: Sandbox) -> None:
    res = sb.exec("kill -9 -1; sleep 1; echo unreachable")
    assert res.reason == "killed" and "unreachable" not in res.stdout
    again = sb.exec("echo recovered")
    assert again.ok and again.stdout == "recovered\n"  # a new agent; init and sleep belong to another uid


def test_per_command_fallback_path(sb: Sandbox) -> None:
    if sb._agent is not None:
        sb._agent.close()
    sb._agent = None
    sb._agent_failures = MAX_AGENT_FAILURES
    res = sb.exec("echo via-exec; exit 4", env={"X": "1"})
    assert (res.exit_code, res.stdout, res.reason) == (4, "via-exec\n", "exited")
    res = sb.exec("sleep 30", timeout_s=1)
    assert res.reason == "timeout" and res.duration_s < 8, res
    assert sb._agent is None


def test_concurrent_execs(sb: Sandbox) -> None:
    results = []

    def run(i: int) -> None:
        results.append(sb.exec(f"sleep 0.5; echo {i}"))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.stdout.strip() for r in results) == ["0", "1", "2"]
    assert all(r.ok for r in results)


def test_background_processes_do_not_outlive_their_exec(sb: Sandbox) -> None:
    sb.exec("setsid sleep 300 & nohup sleep 301 &")
    res = sb.exec("ps -eo args")
    assert "sleep 300" not in res.stdout and "sleep 301" not in res.stdout, res.stdout


def test_an_endless_answer_line_ends_the_agent_not_the_hosts_memory() -> None:
    """Whatever reaches the agent's stdout, the host reads at most MAX_LINE_BYTES of one line (before: it grew
    its buffer, one copy per chunk, until the command's deadline)."""
    import time

    from sandboxes.agent import MAX_LINE_BYTES, AgentDied, LineAgent

    class Flood(LineAgent):
        sent = 0

        def _recv(self, deadline: float) -> bytes:
            self.sent += 1 << 16
            return b"A" * (1 << 16)

    agent = Flood()
    started = time.monotonic()
    with pytest.raises(AgentDied, match="longer than"):
        agent._read_line(time.monotonic() + 60)
    assert agent.sent <= MAX_LINE_BYTES + (2 << 16) and time.monotonic() - started < 5
