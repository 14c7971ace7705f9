"""Sandboxes end when their job ends (real Docker): a scripted run of several iterations holds at most its
producer's sandbox plus the check in use, every container carries the run's id, and nothing is left after."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from orchestrator.config import BudgetLimits, LoopSettings, Settings
from orchestrator.runner import start_run
from sandboxes.engine import LABEL_OWNER_PID, LABEL_RUN
from serving.client import ModelEndpoint
from tasks.code.task import CodeTask
from tests.orchestrator.support import Script, make_code_workspace, tool_call

ITERATIONS = 5
HELD_AT_MOST = 2
"""The producer's sandbox and the one check running: no warm pool is refilled by one-off sandboxes."""


class ContainerWatch:
    """Polls this process's sandbox containers in a thread: the most seen at once and their run-id labels."""

    def __init__(self, client) -> None:  # noqa: ANN001 - a docker.DockerClient
        self.client = client
        self.most = 0
        self.run_ids: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def mine(self) -> list[dict]:
        """Listed without a per-container inspect, which races with removal."""
        return self.client.api.containers(all=True, filters={"label": f"{LABEL_OWNER_PID}={os.getpid()}"})

    def _loop(self) -> None:
        while not self._stop.is_set():
            found = self.mine()
            self.most = max(self.most, len(found))
            self.run_ids |= {c["Labels"].get(LABEL_RUN, "") for c in found}
            self._stop.wait(0.05)

    def __enter__(self) -> ContainerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.docker
def test_run_holds_only_sandboxes_in_use(tmp_path: Path, docker_engine, sandbox_image: str) -> None:
    fast = ModelEndpoint(retry_for_s=0.5)
    settings = Settings(producer=fast, verifier=fast, runs_dir=tmp_path / "runs", sandbox_backend="docker",
                        budget=BudgetLimits(max_iterations=ITERATIONS),
                        loop=LoopSettings(max_turns=2, stuck_patience=10**6))
    # The check always fails, so the run goes on to its iteration budget; the producer runs a command in its
    # own sandbox each iteration.
    task = CodeTask(source=str(make_code_workspace(tmp_path)), check_command="bash check.sh", main="calc.py",
                    image=sandbox_image)
    # Distinct replies: a reply that repeats the previous one word for word would stop the run as stuck.
    script = Script(producer=[tool_call("run", command=f"echo working {i}") for i in range(4 * ITERATIONS)],
                    default={"producer": tool_call("run", command="echo working")})
    with ContainerWatch(docker_engine) as watch:
        run = start_run(task, settings, models=script.factory())
        left = watch.mine()
    assert (run / "iterations" / f"{ITERATIONS:04d}.json").exists()
    assert watch.most <= HELD_AT_MOST, f"{watch.most} containers at once"
    assert watch.run_ids == {run.name}, watch.run_ids
    assert left == [], f"{len(left)} containers left after the run"
