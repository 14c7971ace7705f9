"""One short real agent run: the embedded vLLM server (SmolLM2 on the CPU build of vLLM) as producer, planner
and verifier, the bundled code task, checks in real Docker sandboxes. The tiny model rarely solves the task;
the loop must still behave correctly and record everything."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.config import BudgetLimits, LoopSettings, Settings
from orchestrator.runner import start_run
from serving.client import ModelEndpoint
from tasks.code.task import CodeTask

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.vllm
@pytest.mark.docker
@pytest.mark.slow
def test_real_run_on_embedded_server(tmp_path: Path, embedded_endpoint: tuple[str, str], sandbox_image: str) -> None:
    base_url, model = embedded_endpoint
    endpoint = ModelEndpoint(base_url=base_url, model=model, max_tokens=192)
    settings = Settings(producer=endpoint, verifier=endpoint, runs_dir=tmp_path / "runs",
                        budget=BudgetLimits(max_iterations=1), loop=LoopSettings(max_turns=2),
                        sandbox_backend="docker")
    task = CodeTask(source=str(ROOT / "examples" / "code" / "slugify"), check_command="python3 -m pytest -q",
                    main="slugify.py", protect=["test_slugify.py"], image=sandbox_image)
    run = start_run(task, settings)
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] in ("succeeded", "stopped"), meta
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    calls = [e for e in events if e["kind"] == "model_call"]
    assert calls and all(not e["estimated"] and e["prompt_tokens"] > 0 for e in calls)
    assert {e["role"] for e in calls} >= {"planner", "producer"}
    checks = [e for e in events if e["kind"] == "exec" and e["where"] == "check"]
    assert len(checks) == 1 and checks[0]["reason"] == "exited"
    assert [e["kind"] for e in events].count("verdict") == 1
    assert meta["budget"]["used"]["tokens"] == sum(e["total_tokens"] for e in calls)
    assert (run / "report.md").exists() and (run / "iterations" / "0001.json").exists()


@pytest.mark.vllm
@pytest.mark.docker
@pytest.mark.slow
def test_real_islands_run_on_embedded_server(tmp_path: Path, embedded_endpoint: tuple[str, str],
                                             sandbox_image: str) -> None:
    """Two islands (`[search] islands = 2`): two producers ask the real server at the same time, each works in
    its own Docker sandbox and workspace, and the two candidates are checked in fresh sandboxes, one round."""
    from orchestrator.config import SearchSettings

    base_url, model = embedded_endpoint
    endpoint = ModelEndpoint(base_url=base_url, model=model, max_tokens=192)
    settings = Settings(producer=endpoint, verifier=endpoint, runs_dir=tmp_path / "runs",
                        budget=BudgetLimits(max_iterations=2), loop=LoopSettings(max_turns=2, plan=False),
                        sandbox_backend="docker", search=SearchSettings(islands=2))
    task = CodeTask(source=str(ROOT / "examples" / "code" / "slugify"), check_command="python3 -m pytest -q",
                    main="slugify.py", protect=["test_slugify.py"], image=sandbox_image)
    run = start_run(task, settings)
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] in ("succeeded", "stopped") and meta["iteration"] == 2, meta
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    calls = [e for e in events if e["kind"] == "model_call" and e["role"] == "producer"]
    assert {e["island"] for e in calls} == {0, 1} and all(not e["estimated"] for e in calls)
    checks = [e for e in events if e["kind"] == "exec" and e["where"] == "check"]
    assert sorted((e["iteration"], e["island"]) for e in checks) == [(1, 0), (2, 1)]
    assert all(e["reason"] == "exited" for e in checks)
    records = [json.loads((run / "iterations" / f"000{i}.json").read_text()) for i in (1, 2)]
    assert [r["island"] for r in records] == [0, 1]
    assert (run / "islands" / "01" / "workspace" / "slugify.py").is_file()
