"""Paper reproduction against the REAL embedded vLLM server (SmolLM2-135M): rubric generation through the model
(its rubric is used only if valid, else the deterministic one, with the reason), and a reproduce run to budget.
The small model's quality is not judged here; the loop, the grading and the report must hold up with it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.config import BudgetLimits, LoopSettings, Settings
from orchestrator.runner import start_run
from serving.client import ModelEndpoint
from tasks.paper.asker import endpoint_asker
from tasks.paper.bundle import load_bundle
from tasks.paper.ingest import ingest_pdf
from tasks.paper.rubric import parse_rubric, save_rubric
from tasks.paper.rubric_gen import REPLY_TOKENS, fallback_rubric, generate_rubric
from tasks.paper.task import PaperTask

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def _endpoint(embedded_endpoint: tuple[str, str]) -> ModelEndpoint:
    base_url, model = embedded_endpoint
    return ModelEndpoint(base_url=base_url, model=model, max_tokens=384, retry_for_s=30)


def test_rubric_from_the_real_model_is_valid_or_falls_back(embedded_endpoint: tuple[str, str], tiny_pdf: Path,
                                                           tmp_path: Path) -> None:
    bundle = ingest_pdf(tiny_pdf, tmp_path / "bundle")
    endpoint = ModelEndpoint(base_url=embedded_endpoint[0], model=embedded_endpoint[1], retry_for_s=30)
    ask, budget = endpoint_asker(endpoint, REPLY_TOKENS)  # the default 16K completion must not eat a 4K context
    assert budget.context_tokens == 4096 and budget.prompt_chars > 0
    result = generate_rubric(bundle, ask, budget.prompt_chars)
    assert result.source in ("model", "fallback") and result.calls >= 1  # the pieces fit: the model was asked
    if result.source == "fallback":
        assert result.problems and result.rubric.to_json() == fallback_rubric(bundle).to_json()
    assert not any("model call failed" in p for p in result.problems), result.problems
    parse_rubric(result.rubric.to_json())  # whatever is used is a valid rubric


def test_reproduce_run_with_the_embedded_model_to_budget(embedded_endpoint: tuple[str, str], tiny_pdf: Path,
                                                         tmp_path: Path, sandbox_image: str) -> None:
    rubric_path = tmp_path / "rubric.json"
    save_rubric(fallback_rubric(ingest_pdf(tiny_pdf, tmp_path / "bundle")), rubric_path)
    task = PaperTask(pdf=str(tiny_pdf), rubric=str(rubric_path), reproduce_timeout_s=60, image=sandbox_image,
                     memory_mb=1024)
    endpoint = _endpoint(embedded_endpoint)
    settings = Settings(producer=endpoint, verifier=endpoint, runs_dir=tmp_path / "runs",
                        budget=BudgetLimits(max_iterations=1, max_hours=0.5), loop=LoopSettings(max_turns=2),
                        sandbox_backend="docker")
    run = start_run(task, settings)
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] in ("stopped", "succeeded") and meta["iteration"] == 1, meta["stop_reason"]
    record = json.loads((run / "iterations" / "0001.json").read_text())
    check = record["check"]
    assert 0.0 <= check["score"] <= 1.0 and check["evidence_path"].endswith("grades.json")
    grades = json.loads((run / check["evidence_path"]).read_text())
    assert {g["method"] for g in grades["leaves"]} <= {"numeric", "rule", "judge", "none"}
    assert "## Paper reproduction" in (run / "report.md").read_text()
    assert (run / "artifacts" / "paper" / "report.html").is_file()
    assert load_bundle(run / "workspace" / "paper").title == "Least Squares on a Noisy Line"
