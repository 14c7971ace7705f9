"""The full three-stage loop on a tiny synthetic paper: `m3lab reproduce`'s path (rubric file, PaperTask,
start_run) with scripted models and REAL Docker re-runs. Iteration 1 gets the numbers wrong, the findings name the
deviations, iteration 2 reproduces the paper and the run succeeds with the side-by-side report."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage

from orchestrator.config import BudgetLimits, Settings
from orchestrator.runner import start_run
from serving.client import ModelEndpoint
from tasks.paper.bundle import load_bundle
from tasks.paper.ingest import ingest_pdf
from tasks.paper.rubric import save_rubric
from tasks.paper.rubric_gen import fallback_rubric
from tasks.paper.task import PaperTask
from tests.orchestrator.support import PolicyChatModel, tool_call

from . import tiny_experiment
from .judges import ScriptedJudge, always

pytestmark = [pytest.mark.docker, pytest.mark.slow]

RIGHT = Path(tiny_experiment.__file__).read_text()
WRONG = RIGHT.replace("return w, my - w * mx", "return 1.0, my - 1.0 * mx  # wrong: slope fixed at 1")


def producer(messages: list) -> AIMessage:
    seen = sum("Verifier verdict on iteration" in str(m.content) for m in messages)
    return AIMessage(content="```python\n" + (RIGHT if seen else WRONG) + "```")


GRADER = ScriptedJudge(always(1, "scripted: the code does least squares"))


def verifier(messages: list) -> AIMessage:
    prompt = str(messages[-1].content)
    if "You grade" in prompt:
        return AIMessage(content=GRADER(prompt))
    return tool_call("submit_verdict", verdict="pass", findings=["scripted review: numbers checked"])


def models(role: str, endpoint: ModelEndpoint, thinking: bool, max_tokens: int | None = None) -> PolicyChatModel:
    if role == "planner":
        return PolicyChatModel(messages=iter([]), policy=lambda m: AIMessage(content="1. fit\n2. tabulate"))
    return PolicyChatModel(messages=iter([]), policy=producer if role == "producer" else verifier)


def test_reproduce_loop_fixes_deviations_and_reports(tiny_pdf: Path, tmp_path: Path, sandbox_image: str) -> None:
    rubric_path = tmp_path / "rubric.json"
    save_rubric(fallback_rubric(ingest_pdf(tiny_pdf, tmp_path / "bundle")), rubric_path)
    task = PaperTask(pdf=str(tiny_pdf), rubric=str(rubric_path), reproduce_timeout_s=120, image=sandbox_image,
                     memory_mb=1024)
    endpoint = ModelEndpoint(retry_for_s=0.5)
    settings = Settings(producer=endpoint, verifier=endpoint, runs_dir=tmp_path / "runs",
                        budget=BudgetLimits(max_iterations=3), sandbox_backend="docker")
    run = start_run(task, settings, models=models)

    meta = json.loads((run / "run.json").read_text())
    assert (meta["status"], meta["iteration"], meta["best_iteration"]) == ("succeeded", 2, 2), meta["stop_reason"]
    first = json.loads((run / "iterations" / "0001.json").read_text())
    assert first["check"]["passed"] is False and first["check"]["score"] < 0.8
    assert any("table_1/ours/mse" in f and "outside" in f for f in first["check"]["findings"])
    second = json.loads((run / "iterations" / "0002.json").read_text())
    assert second["check"]["score"] == pytest.approx(1.0)
    checks = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert [e["exit_code"] for e in checks if e["kind"] == "exec" and e.get("where") == "check"] == [0, 0]

    art = run / "artifacts" / "paper"
    html = (art / "report.html").read_text()
    assert "Reproduction of Least Squares on a Noisy Line" in html and "figures/figure_1_compare.png" in html
    assert json.loads((art / "rubric.json").read_text())["score"] == 1.0
    assert load_bundle(run / "workspace" / "paper").title == "Least Squares on a Noisy Line"
    report = (run / "report.md").read_text()
    assert "## Paper reproduction" in report and "| results/table_1/ours/mse | 0.385 |" in report
