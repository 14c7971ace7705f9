"""What a weak model's failures look like in a run: a reply cut at the completion limit is recorded and said to
the model; a reply that repeats an earlier one raises the sampling temperature and changes strategy at once."""
from __future__ import annotations

import json
from pathlib import Path

from langchain_core.messages import AIMessage

from tests.orchestrator.support import Script
from tests.orchestrator.test_loop import BAD, events, meta, run_with

CUT = AIMessage(content="Let me explain the approach first. The function should",
                response_metadata={"finish_reason": "length"})


def _conversation(run: Path) -> str:
    return (run / "conversations" / "producer-00.jsonl").read_text()


def test_reply_cut_at_the_limit_is_recorded_and_said(tmp_path: Path) -> None:
    script = Script(producer=[CUT, AIMessage(content=f"```python\n{BAD}```")])
    run = run_with(tmp_path, script, max_iterations=1)
    calls = [e for e in events(run) if e["kind"] == "model_call" and e["role"] == "producer"]
    assert calls[0]["cut_at_limit"] is True and calls[0]["finish_reason"] == "length"
    assert calls[0]["completion_limit"] > 0 and calls[1]["cut_at_limit"] is False
    said = [json.loads(line)["data"]["content"] for line in _conversation(run).splitlines()]
    cut_note = next(m for m in said if isinstance(m, str) and m.startswith("Your reply was cut off"))
    assert f"({calls[0]['completion_limit']} tokens) before it held a complete action" in cut_note
    assert "calls; 1 cut at the completion limit; 0 repeated" in (run / "report.md").read_text()


def test_repeated_reply_raises_temperature_and_changes_strategy_at_once(tmp_path: Path) -> None:
    same = AIMessage(content=f"```python\n{BAD}```")
    script = Script(producer=[same, same, same], default={"producer": AIMessage(content="DONE: give up")})
    run = run_with(tmp_path, script, max_iterations=3)
    evs = events(run)
    repeats = [e for e in evs if e["kind"] == "repeated_output"]
    assert repeats and repeats[0]["iteration"] == 2
    changes = [e for e in evs if e["kind"] == "strategy_change"]
    assert changes[0]["iteration"] == 2 and "repeated its previous reply" in changes[0]["reason"]
    temps = [e["temperature"] for e in evs if e["kind"] == "model_call" and e["role"] == "producer"]
    assert temps[0] < temps[-1]  # sampling varied after the repeat
    assert "word for word" in _conversation(run)
    assert meta(run)["iteration"] >= 2


def test_running_the_same_check_again_after_an_edit_is_not_a_repeat(tmp_path: Path) -> None:
    from tests.orchestrator.support import tool_call
    from tests.orchestrator.test_loop import GOOD

    check = tool_call("run", command="bash check.sh")
    script = Script(producer=[tool_call("write_file", path="calc.py", content=BAD), check,
                              tool_call("write_file", path="calc.py", content=GOOD), check,
                              tool_call("done", summary="fixed")])
    run = run_with(tmp_path, script, max_iterations=1)
    assert meta(run)["status"] == "succeeded"
    assert not [e for e in events(run) if e["kind"] == "repeated_output"]
