"""A kernel search with three islands whose evaluations are Ray tasks on the real local Ray cluster: the three
evaluations of a round are in flight at once, and the verdicts are those of the same search evaluated here."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage

from orchestrator import events as ev
from orchestrator.cluster import Offloader
from orchestrator.config import (
    BudgetLimits,
    ClusterSettings,
    LoopSettings,
    SearchSettings,
    Settings,
)
from orchestrator.runner import create_run, drive
from orchestrator.runtime import Runtime
from orchestrator.store import StoreSettings
from orchestrator.store.slots import evaluations_in_flight
from serving.client import ModelEndpoint
from tasks.kernel.runner import EvalOptions
from tasks.kernel.targets import TARGETS_DIR
from tasks.kernel.task import KernelTask
from tests.orchestrator.support import PolicyChatModel, Script, local_opener, tool_call

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

CANDIDATES = {0: TARGETS_DIR / "candidates" / "softmax_torch.py", 1: TARGETS_DIR / "cheats" / "c10_nan_wildcard.py"}
"""What island k writes as candidate.py; island 2 submits the starting file (the reference, renamed)."""


def island_policy(messages: list) -> AIMessage:
    island = ev.ISLAND.get()
    last = str(messages[-1].content)
    if island not in CANDIDATES or last.startswith(("wrote ", "Observation (write_file)")):
        return tool_call("done", summary="candidate ready")
    return tool_call("write_file", path="candidate.py", content=CANDIDATES[island].read_text())


def models(role: str, endpoint: Any, thinking: bool, max_tokens: int | None = None) -> Any:
    if role == "producer":
        return PolicyChatModel(messages=iter(()), policy=island_policy)
    return Script().factory()(role, endpoint, thinking)


class TimedOffloader(Offloader):
    """The real offloader, noting when each evaluation was handed to Ray and when its verdict came back."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spans: list[tuple[float, float]] = []
        self.lock = threading.Lock()

    def __call__(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return super().__call__(fn, *args, **kwargs)
        finally:
            with self.lock:
                self.spans.append((started, time.monotonic()))


def verdicts(run: Path) -> dict[int, tuple[Any, ...]]:
    """Per iteration: island, verdict kind, accepted, speed-up > 0, and every cheat/wrong/error finding (flags and
    warnings are about timing noise on a loaded machine and may differ between two evaluations)."""
    out = {}
    for path in sorted((run / "iterations").glob("*.json")):
        rec = json.loads(path.read_text())
        findings = sorted(f for f in rec["check"]["findings"] if f.startswith(("cheat", "wrong", "error")))
        out[rec["iteration"]] = (rec["island"], rec["verdict"]["verdict"], rec["check"]["passed"],
                                 rec["check"]["score"] > 0, findings)
    return out


def test_island_evaluations_run_concurrently_on_ray_with_local_verdicts(tmp_path: Path, pg_url: str,
                                                                        ray_cluster: str) -> None:
    fast = ModelEndpoint(retry_for_s=0.5)
    task = KernelTask(target="softmax", isolation="subprocess", options=EvalOptions(iters=3, warmup=1))
    settings = Settings(producer=fast, verifier=fast, runs_dir=tmp_path / "runs", budget=BudgetLimits(max_iterations=3),
                        loop=LoopSettings(stuck_patience=20), search=SearchSettings(islands=3),
                        cluster=ClusterSettings(address=ray_cluster, eval_cpus=1.0))
    results = {}
    store = StoreSettings(url=pg_url)  # each evaluation is marked in flight there (a connection each: 3 at once)
    offload = TimedOffloader(settings.cluster, store, at_once=3)
    for where, off in (("local", None), ("ray", offload)):
        run = create_run(task, settings)
        drive(Runtime(run, task, settings, models, local_opener, offload=off), resume=False)
        assert json.loads((run.path / "run.json").read_text())["iteration"] == 3
        results[where] = verdicts(run.path)
    assert results["ray"] == results["local"]
    assert [v[:3] for v in results["local"].values()] == [(0, "pass", True), (1, "fail", False), (2, "pass", True)]
    assert offload.submitted == 3 and len(offload.spans) == 3
    assert max(s for s, _ in offload.spans) < min(e for _, e in offload.spans)  # all three in flight at once
    assert evaluations_in_flight(store) == 0
