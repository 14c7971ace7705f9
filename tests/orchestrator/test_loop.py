"""The real loop driven by scripted chat models: pass first time, fail then fix, stuck, budgets, steering,
stop, endpoint down then back, resume of a finished run."""
from __future__ import annotations

import json
from pathlib import Path

import git
import httpx
import openai
import pytest
from langchain_core.messages import AIMessage

from orchestrator.config import BudgetLimits, LoopSettings, Settings
from orchestrator.control import add_steer, request_stop
from orchestrator.runner import create_run, drive, resume_run, start_run
from orchestrator.runtime import Runtime
from serving.client import EndpointUnavailable, ModelEndpoint
from tasks.code.task import CodeTask
from tests.orchestrator.support import Script, local_opener, make_code_workspace, tool_call

GOOD = "def add(a, b):\n    return a + b\n"
BAD = "def add(a, b):\n    return a - b\n"


def events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]


def meta(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def settings(tmp: Path, **budget) -> Settings:
    fast = ModelEndpoint(retry_for_s=0.5)
    return Settings(producer=fast, verifier=fast, runs_dir=tmp / "runs",
                    budget=BudgetLimits(**{"max_iterations": 6, **budget}), loop=LoopSettings(stuck_patience=3))


def task(tmp: Path) -> CodeTask:
    return CodeTask(source=str(make_code_workspace(tmp)), check_command="bash check.sh", main="calc.py",
                    protect=["check.sh"])


def run_with(tmp: Path, script: Script, **budget) -> Path:
    return start_run(task(tmp), settings(tmp, **budget), models=script.factory(), open_sandbox=local_opener)


def test_pass_first_time(tmp_path: Path) -> None:
    script = Script(producer=[tool_call("write_file", path="calc.py", content=GOOD), tool_call("done", summary="ok")])
    run = run_with(tmp_path, script)
    assert meta(run)["status"] == "succeeded"
    assert meta(run)["iteration"] == 1
    kinds = [e["kind"] for e in events(run)]
    assert kinds.count("verdict") == 1 and "run_finished" in kinds
    repo = git.Repo(run / "git")
    assert repo.head.commit.message.startswith("iteration 1: pass")
    assert (run / "report.md").read_text().count("| 1 | pass |") == 1
    record = json.loads((run / "iterations" / "0001.json").read_text())
    started = next(e["ts"] for e in events(run) if e["kind"] == "iteration_started")
    assert record["started_at"] == started <= record["ended_at"]


def test_fail_then_fix_gets_findings_verbatim(tmp_path: Path) -> None:
    script = Script(producer=[
        tool_call("write_file", path="calc.py", content=BAD), tool_call("done", summary="first try"),
        tool_call("write_file", path="calc.py", content=GOOD), tool_call("done", summary="fixed")])
    run = run_with(tmp_path, script)
    assert meta(run)["status"] == "succeeded" and meta(run)["iteration"] == 2
    verdicts = [e for e in events(run) if e["kind"] == "verdict"]
    assert [v["verdict"] for v in verdicts] == ["fail", "pass"]
    conv = (run / "conversations" / "producer-00.jsonl").read_text()
    assert "AssertionError" in conv and "Verifier verdict on iteration 1" in conv


def test_bare_code_block_from_weak_model_becomes_main_file(tmp_path: Path) -> None:
    script = Script(producer=[AIMessage(content=f"Here:\n```python\n{GOOD}```\n")])
    run = run_with(tmp_path, script)
    assert meta(run)["status"] == "succeeded"
    assert (run / "workspace" / "calc.py").read_text() == GOOD


def test_verifier_veto_and_unparsable_review_never_pass(tmp_path: Path) -> None:
    script = Script(producer=[tool_call("write_file", path="calc.py", content=GOOD), tool_call("done", summary="x")],
                    verifier=[tool_call("submit_verdict", verdict="fail", findings=["hard-coded"]),
                              AIMessage(content="looks fine to me")],
                    default={"producer": AIMessage(content="DONE: again")})
    run = run_with(tmp_path, script, max_iterations=2)
    verdicts = [e["verdict"] for e in events(run) if e["kind"] == "verdict"]
    assert verdicts == ["fail", "error"]
    assert meta(run)["status"] == "stopped" and meta(run)["stop_reason"].startswith("budget_iterations")


def test_editing_protected_tests_does_not_help(tmp_path: Path) -> None:
    script = Script(producer=[tool_call("write_file", path="check.sh", content="exit 0\n"),
                              tool_call("done", summary="tests pass now")])
    run = run_with(tmp_path, script, max_iterations=1)
    verdict = [e for e in events(run) if e["kind"] == "verdict"][0]
    assert verdict["verdict"] == "fail"
    assert any("protected path check.sh was modified" in f for f in verdict["findings"])


def test_stuck_changes_strategy_then_stops(tmp_path: Path) -> None:
    script = Script(default={"producer": AIMessage(content="DONE: nothing changed")})
    run = run_with(tmp_path, script, max_iterations=20)
    m = meta(run)
    assert m["status"] == "stopped" and m["stop_reason"].startswith("stuck")
    kinds = [e["kind"] for e in events(run)]
    assert kinds.count("strategy_change") == 1
    assert (run / "conversations" / "producer-01.jsonl").exists()
    thinking = [e["thinking"] for e in events(run) if e["kind"] == "model_call" and e["role"] == "producer"]
    assert thinking[0] is False and thinking[-1] is True  # deep thinking after repeated failures


@pytest.mark.parametrize("budget,reason", [({"max_iterations": 2}, "budget_iterations"),
                                           ({"max_tokens": 50}, "budget_tokens"),
                                           ({"max_hours": 1e-9}, "budget_time")])
def test_each_budget_ends_the_run_with_a_report(tmp_path: Path, budget: dict, reason: str) -> None:
    script = Script(default={"producer": tool_call("write_file", path="calc.py", content=BAD + "# x\n")})
    run = run_with(tmp_path, script, **budget)
    m = meta(run)
    assert m["status"] == "stopped" and m["stop_reason"].startswith(reason)
    assert (run / "report.md").exists()


def test_steering_reaches_the_producer_and_is_recorded(tmp_path: Path) -> None:
    t, s = task(tmp_path), settings(tmp_path)
    run = create_run(t, s)
    add_steer(run.path, "use integers only")
    script = Script(producer=[tool_call("write_file", path="calc.py", content=GOOD), tool_call("done", summary="ok")])
    drive(Runtime(run, t, s, script.factory(), local_opener), resume=False)
    steer = [e for e in events(run.path) if e["kind"] == "steer"]
    assert [e["text"] for e in steer] == ["use integers only"]
    assert "use integers only" in (run.path / "conversations" / "producer-00.jsonl").read_text()


def test_stop_request_ends_cleanly(tmp_path: Path) -> None:
    t, s = task(tmp_path), settings(tmp_path)
    run = create_run(t, s)
    request_stop(run.path)
    drive(Runtime(run, t, s, Script().factory(), local_opener), resume=False)
    assert meta(run.path)["status"] == "stopped" and meta(run.path)["stop_reason"].startswith("user")


class _DownThenUp:
    """Producer endpoint refuses connections until `up` is set."""

    def __init__(self, script: Script):
        self.script, self.up = script, False

    def factory(self):
        inner = self.script.factory()

        def make(role, endpoint, thinking, max_tokens=None):
            if role == "producer" and not self.up:
                # a real request, as the client raises it (openai >= 3.60 reads its headers)
                raise openai.APIConnectionError(request=httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions"))
            return inner(role, endpoint, thinking, max_tokens)
        return make


def test_endpoint_down_pauses_then_resume_completes(tmp_path: Path) -> None:
    script = Script(producer=[tool_call("write_file", path="calc.py", content=GOOD), tool_call("done", summary="ok")])
    flaky = _DownThenUp(script)
    t, s = task(tmp_path), settings(tmp_path)
    run = create_run(t, s)
    with pytest.raises(EndpointUnavailable):
        drive(Runtime(run, t, s, flaky.factory(), local_opener), resume=False)
    assert meta(run.path)["status"] == "paused"
    flaky.up = True
    resume_run(run.path, s, models=flaky.factory(), open_sandbox=local_opener)
    assert meta(run.path)["status"] == "succeeded"
    assert [e["kind"] for e in events(run.path)].count("plan") == 1


def test_stopped_run_resumes_with_a_larger_budget(tmp_path: Path) -> None:
    script = Script(default={"producer": tool_call("write_file", path="calc.py", content=BAD + "# y\n")})
    run = run_with(tmp_path, script, max_iterations=1)
    assert meta(run)["status"] == "stopped"
    fixed = Script(producer=[tool_call("write_file", path="calc.py", content=GOOD), tool_call("done", summary="ok")])
    resume_run(run, settings(tmp_path), models=fixed.factory(), open_sandbox=local_opener,
               budget_overrides={"max_iterations": 3})
    m = meta(run)
    assert m["status"] == "succeeded" and m["iteration"] == 2
    assert sorted(int(p.stem) for p in (run / "iterations").glob("*.json")) == [1, 2]
