"""`m3lab optimize` end to end: the real LangGraph loop with a scripted model (and, marked, the embedded vLLM
model) on a kernel task; budget stop, program database, resume from the run directory."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from langchain_core.messages import AIMessage

from orchestrator.config import BudgetLimits, LoopSettings, Settings
from orchestrator.runner import resume_run, start_run
from serving.client import ModelEndpoint
from tasks.kernel.runner import EvalOptions
from tasks.kernel.targets import TARGETS_DIR
from tasks.kernel.task import KernelTask
from tests.orchestrator.support import Script, local_opener, tool_call

HONEST = (TARGETS_DIR / "candidates" / "softmax_torch.py").read_text()
NAN_CHEAT = (TARGETS_DIR / "cheats" / "c10_nan_wildcard.py").read_text()


def _settings(tmp: Path, iterations: int, endpoint: ModelEndpoint | None = None) -> Settings:
    ep = endpoint or ModelEndpoint(retry_for_s=0.5)
    return Settings(producer=ep, verifier=ep, runs_dir=tmp / "runs",
                    budget=BudgetLimits(max_iterations=iterations), loop=LoopSettings(stuck_patience=5))


def _task() -> KernelTask:
    return KernelTask(target="softmax", isolation="subprocess", options=EvalOptions(iters=4, warmup=1))


def _meta(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


@pytest.mark.slow
def test_scripted_search_runs_to_budget_and_resumes(tmp_path: Path) -> None:
    script = Script(producer=[
        tool_call("write_file", path="candidate.py", content=NAN_CHEAT), tool_call("done", summary="nan trick"),
        AIMessage(content=f"Faster:\n```python\n{HONEST}```\n"),  # a bare code block becomes candidate.py
    ])
    run = start_run(_task(), _settings(tmp_path, 2), models=script.factory(), open_sandbox=local_opener)
    meta = _meta(run)
    assert meta["status"] == "stopped" and meta["iteration"] == 2  # kernel searches run to budget
    table = pd.read_csv(run / "artifacts/kernel/candidates.csv")
    assert list(table["iteration"]) == [1, 2]
    assert list(table["correct"]) == [False, True] and float(table["speedup"].iloc[1]) > 0
    assert meta["best_score"] > 0 and meta["best_iteration"] == 2
    assert (run / "artifacts/kernel/best_speedup.png").is_file()
    assert "Best verified speed-up" in (run / "report.md").read_text()
    # Resume with a larger budget: the database continues from the run directory.
    script2 = Script(producer=[AIMessage(content=f"```python\n{HONEST}```\n")])
    resume_run(run, _settings(tmp_path, 3), models=script2.factory(), open_sandbox=local_opener,
               budget_overrides={"max_iterations": 3})
    table = pd.read_csv(run / "artifacts/kernel/candidates.csv")
    assert list(table["iteration"]) == [1, 2, 3] and _meta(run)["iteration"] == 3


@pytest.mark.vllm
@pytest.mark.slow
def test_embedded_model_search_to_budget(tmp_path: Path, embedded_endpoint: tuple[str, str]) -> None:
    base_url, model = embedded_endpoint
    # 512 tokens: a kernel's worth for the tiny model, which rarely writes a working one; the loop is what is tested
    ep = ModelEndpoint(base_url=base_url, model=model, max_tokens=512, retry_for_s=5.0)
    run = start_run(_task(), _settings(tmp_path, 2, ep), open_sandbox=local_opener)
    meta = _meta(run)
    assert meta["status"] in ("stopped", "succeeded") and meta["iteration"] >= 1
    table = pd.read_csv(run / "artifacts/kernel/candidates.csv")
    assert len(table) == meta["iteration"]  # every candidate the weak model wrote went through the harness
