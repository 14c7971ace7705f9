"""The graph's nodes one at a time, each called alone on a small state with a scripted model and a real run
directory (the whole loop is driven in test_loop.py, crashes and resumes in test_crash_resume.py)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import git
import pytest
from langchain_core.messages import AIMessage

from orchestrator.agents.verifier import Verdict
from orchestrator.config import BudgetLimits, LoopSettings, Settings
from orchestrator.control import request_stop
from orchestrator.graph import build_graph, close_iteration, decide, plan, produce, routes, state_usage, verify_node
from orchestrator.runner import create_run
from orchestrator.runtime import Runtime
from orchestrator.tokens import Usage
from orchestrator.workspace import stage_tree
from serving.client import ModelEndpoint
from tasks.base import CheckReport
from tasks.code.task import CodeTask
from tests.orchestrator.support import Script, local_opener, make_code_workspace, tool_call

GOOD = "def add(a, b):\n    return a + b\n"


def runtime(tmp: Path, script: Script | None = None, models: Any = None, **budget: Any) -> Runtime:
    fast = ModelEndpoint(retry_for_s=0.5)
    settings = Settings(producer=fast, verifier=fast, runs_dir=tmp / "runs",
                        budget=BudgetLimits(**{"max_iterations": 6, **budget}), loop=LoopSettings(stuck_patience=3))
    task = CodeTask(source=str(make_code_workspace(tmp)), check_command="bash check.sh", main="calc.py",
                    protect=["check.sh"])
    return Runtime(create_run(task, settings), task, settings, models or (script or Script()).factory(),
                   local_opener)


def kinds(rt: Runtime) -> list[str]:
    return [json.loads(line)["kind"] for line in (rt.run.path / "events.jsonl").read_text().splitlines()]


def test_plan_writes_the_plan_once_and_counts_its_tokens(tmp_path: Path) -> None:
    script = Script(planner=[AIMessage(content="1. fix add")])
    rt = runtime(tmp_path, script)
    first = plan(rt, {})
    assert first.goto == "produce" and first.update["planned"] and first.update["status"] == "running"
    assert first.update["prompt_tokens"] > 0 and first.update["completion_tokens"] > 0
    assert (rt.run.artifacts / "plan.md").read_text() == "1. fix add"
    again = plan(rt, {})  # the step replayed after a crash before its checkpoint: the journal answers
    assert script.calls == ["planner"] and again.update["prompt_tokens"] == first.update["prompt_tokens"]
    assert kinds(rt).count("plan") == 1
    resumed = plan(rt, {"planned": True, "status": "stopped", "stop_reason": "budget"})
    assert resumed.goto == "produce" and resumed.update == {"status": "running", "stop_reason": ""}


def test_produce_goes_on_until_done_then_to_verify(tmp_path: Path) -> None:
    script = Script(producer=[tool_call("write_file", path="calc.py", content=GOOD), tool_call("done", summary="ok")])
    rt = runtime(tmp_path, script)
    first = produce(rt, {})
    assert first.goto == "produce" and first.update["turn"] == 1 and first.update["claim"] == ""
    assert (rt.run.workspace / "calc.py").read_text() == GOOD
    second = produce(rt, {**first.update})
    assert second.goto == "verify" and second.update["turn"] == 2 and second.update["claim"] == "ok"
    assert second.update["conv_len"] == len(rt.conversation) > first.update["conv_len"]
    assert second.update["completion_tokens"] > first.update["completion_tokens"]
    assert kinds(rt).count("iteration_started") == 1  # keyed: one per iteration, not per turn


def test_produce_reopens_the_conversation_at_the_checkpoint(tmp_path: Path) -> None:
    """A replayed step (or another process) sees only the messages its checkpoint committed."""
    script = Script(producer=[tool_call("write_file", path="a.txt", content="1"), AIMessage(content="thinking")])
    rt = runtime(tmp_path, script)
    first = produce(rt, {})
    produce(rt, {**first.update})  # its checkpoint is lost: the messages it added must not stay
    rt.conversation = None
    replay = produce(rt, {**first.update})
    path = rt.run.path / "conversations" / "producer-00.jsonl"
    assert len(path.read_text().splitlines()) == replay.update["conv_len"] == len(rt.conversation)


def test_produce_stops_on_request_or_budget_without_calling_the_model(tmp_path: Path) -> None:
    script = Script()
    rt = runtime(tmp_path, script, max_tokens=100)
    over = produce(rt, {"prompt_tokens": 90, "completion_tokens": 20})
    assert over.goto == "report" and over.update["stop_reason"].startswith("budget_tokens")
    request_stop(rt.run.path, "enough")
    stopped = produce(rt, {})
    assert stopped.goto == "report" and stopped.update == {"status": "stopped", "stop_reason": "user: enough"}
    assert script.calls == [] and "iteration_started" not in kinds(rt)


def test_verify_then_decide_a_failure_iterates_with_the_findings(tmp_path: Path) -> None:
    rt = runtime(tmp_path)  # the workspace's add() raises: the check fails
    state: dict[str, Any] = {"claim": "done", "prompt_tokens": 5}
    checked = verify_node(rt, state)
    assert checked.goto == "decide" and checked.update["prompt_tokens"] == 5  # no review of a failed check
    state.update(checked.update)
    decided = decide(rt, state)
    update = decided.update
    assert decided.goto == "produce" and update["completed"] == 1 and update["consecutive_failures"] == 1
    assert update["turn"] == 0 and update["claim"] == "" and len(update["fail_history"]) == 1
    assert "Verifier verdict on iteration 1: fail" in str(rt.conversation.messages[-1].content)
    assert update["conv_len"] == len(rt.conversation)
    again = decide(rt, state)  # replayed after a crash: same update, no second commit or event
    assert again.update == {**update, "elapsed_s": again.update["elapsed_s"]}
    assert [k for k in kinds(rt) if k in ("verdict", "commit", "decision")] == ["verdict", "commit", "decision"]
    assert len(list(git.Repo(rt.run.git_dir).iter_commits())) == 2  # the initial commit and iteration 1


def test_verify_then_decide_a_pass_finishes_the_run(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    (rt.run.workspace / "calc.py").write_text(GOOD)
    checked = verify_node(rt, {"claim": "fixed"})
    assert checked.update["prompt_tokens"] > 0  # the review's model call
    decided = decide(rt, checked.update)
    assert decided.goto == "report" and decided.update["status"] == "succeeded"
    assert decided.update["best_score"] == 1.0 and decided.update["best_iteration"] == 1
    meta = rt.run.read_meta()
    assert meta["iteration"] == 1 and meta["best_score"] == 1.0
    assert meta["budget"]["used"]["prompt_tokens"] == checked.update["prompt_tokens"]


def test_decide_needs_the_verified_iteration(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="verdict-0001"):
        decide(runtime(tmp_path), {})


def test_close_iteration_records_an_iteration_once(tmp_path: Path) -> None:
    rt = runtime(tmp_path)
    tree = stage_tree(rt.run.git_dir, rt.run.workspace)
    verdict = Verdict("fail", 0.0, ["add raises NotImplementedError"], CheckReport(False, 0.0, "1 failed"))
    after = {"completed": 1, "best_score": 0.0, "best_iteration": 0, "elapsed_s": 2.0, "prompt_tokens": 7}
    for _ in range(2):
        close_iteration(rt, after, tree, verdict, "iterate", "not accepted yet")
    assert kinds(rt).count("commit") == kinds(rt).count("decision") == 1
    record = json.loads(rt.run.iteration_path(1).read_text())
    assert record["decision"]["action"] == "iterate"
    head = git.Repo(rt.run.git_dir).head.commit.message
    assert head.startswith("iteration 1: fail (score 0): add raises NotImplementedError")
    meta = rt.run.read_meta()
    assert meta["iteration"] == 1 and meta["budget"]["used"]["elapsed_s"] == 2.0
    assert meta["budget"]["used"]["tokens"] == 7


def test_nodes_keep_their_routes_when_bound(tmp_path: Path) -> None:
    assert routes(produce) == ("produce", "verify", "report")
    edges = {(e.source, e.target) for e in build_graph(runtime(tmp_path), None).get_graph().edges}
    assert {("plan", "produce"), ("produce", "verify"), ("produce", "report"), ("verify", "decide"),
            ("decide", "produce"), ("decide", "report"), ("report", "__end__")} <= edges


def test_usage_adds_and_keeps_the_journal_shape() -> None:
    calls = [Usage(10, 2, 1), Usage(5, 3, 0, estimated=True)]
    total = sum(calls, Usage())
    assert total == Usage(15, 5, 1, estimated=True) and total.total == 20
    assert total.to_json() == {"prompt": 15, "completion": 5, "reasoning": 1}
    assert Usage.from_json({}) == Usage() and state_usage({"prompt_tokens": 3}) == Usage(3, 0, 0)
    journaled = {"verdict": "pass", "score": 1.0, "findings": [], "review": None,  # as runs wrote it before
                 "check": CheckReport(True, 1.0, "ok").to_json(), "tokens": {"prompt": 4, "completion": 2,
                                                                             "reasoning": 0}}
    verdict = Verdict.from_json(journaled)
    assert verdict.usage == Usage(4, 2, 0) and verdict.to_json() == journaled


class _SmallServer:
    """A model factory that knows its server's context (the real one asks the server)."""

    def __init__(self, script: Script, context: int | None):
        self.make, self.context = script.factory(), context

    def __call__(self, role: str, endpoint: ModelEndpoint, thinking: bool, max_tokens: int | None = None) -> Any:
        return self.make(role, endpoint, thinking, max_tokens)

    def context_length(self, endpoint: ModelEndpoint) -> int | None:
        return self.context


def test_token_limits_follow_what_the_model_factory_knows(tmp_path: Path) -> None:
    assert runtime(tmp_path / "a", models=_SmallServer(Script(), 4096)).token_limits("producer") == (2816, 1024)
    unknown = runtime(tmp_path / "b", models=_SmallServer(Script(), None)).token_limits("producer")
    assert unknown == runtime(tmp_path / "c").token_limits("producer") == (32768 - 8192 - 256, 8192)
