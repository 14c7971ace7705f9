"""The run directory's schema (orchestrator/events.py): constructors written by the real EventLog, the line each
kind prints, IterationRecord round trips, the exec builder, and the README table that documents the kinds."""
from __future__ import annotations

import json
import re
import threading
import time
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import eventlog, events
from orchestrator.events import Decision, IterationRecord, format_event, read_record
from orchestrator.rundir import EventLog
from tasks.base import EXEC_TAIL_CHARS, CheckReport, exec_fields

T0 = 1_700_000_000.0

CHECK = CheckReport(False, 0.0, "exit 1", metrics={"duration_s": 1.2})
EXEC = exec_fields("producer", "pytest -q", 1, "exited", 1.5, "F\n1 failed\n", "", log="logs/exec/0001-0000010.json")
MODEL_CALL = dict(role="producer", model="m", thinking=True, temperature=0.2, completion_limit=4096,
                  finish_reason="length", prompt_tokens=10, completion_tokens=5, reasoning_tokens=1, total_tokens=15,
                  estimated=False, latency_s=1.2344, tool_calls=1)

# (event, the live line of a foreground run or None, the `m3lab runs logs` line after "HH:MM:SS #seq ")
CASES: list[tuple[events.Event, str | None, str]] = [
    (events.run_started("code: make tests pass"), None, '[it None] run_started: task="code: make tests pass"'),
    (events.run_resumed(3, "code: x"), None, '[it 3] run_resumed: task="code: x"'),
    (events.lease_acquired(3, "host:1:ab"), None, '[it 3] lease_acquired: owner="host:1:ab"'),
    (events.plan(), None, '[it None] plan: path="artifacts/plan.md"'),
    (events.iteration_started(1), "[bold]iteration 1[/bold]", "[it 1] iteration_started: "),
    (events.model_call(1, **MODEL_CALL), "  producer: 15 tokens (thinking, 1.2 s, cut at the 4096-token limit)",
     '[it 1] model_call: role="producer" model="m" thinking=true temperature=0.2 completion_limit=4096 '
     'cut_at_limit=true prompt_tokens=10 completion_tokens=5 reasoning_tokens=1 total_tokens=15 estimated=false '
     'latency_s=1.234 finish_reason="length" tool_calls=1'),
    (events.tool_call(1, "producer", "write_file", {"path": "a.py", "content": "x" * 300}, True, "written"),
     "  write_file(path='a.py') -> ok",
     '[it 1] tool_call: role="producer" tool="write_file" args={"path": "a.py", "content": "' + "x" * 131
     + ' ok=true output="written"'),
    (events.exec_event(1, EXEC), None,
     '[it 1] exec: where="producer" cmd="pytest -q" exit_code=1 reason="exited" duration_s=1.5 '
     'stdout_tail="F\\n1 failed" stderr_tail="" log="logs/exec/0001-0000010.json"'),
    (events.rollback(1), None, '[it 1] rollback: reason="quota" to="HEAD"'),
    (events.check(1, CHECK), "  check: failed (score 0)",
     '[it 1] check: passed=false score=0.0 summary="exit 1" metrics={"duration_s": 1.2}'),
    (events.verdict(1, "fail", 0.0, ["test_a failed: " + "z" * 300]), "  verdict: [bold]fail[/bold] test_a failed: …",
     '[it 1] verdict: verdict="fail" score=0.0 findings=["test_a failed: ' + "z" * 143),
    (events.commit(1, "abc123", "iteration 1: fail"), None, '[it 1] commit: sha="abc123" message="iteration 1: fail"'),
    (events.decision(1, "iterate", "not accepted yet"), "  decision: iterate — not accepted yet",
     '[it 1] decision: action="iterate" reason="not accepted yet"'),
    (events.steer(2, 0, "use numpy"), "  steer:  — use numpy", '[it 2] steer: text="use numpy"'),
    (events.strategy_change(2, "the same failure over 3 iterations", "new producer context"),
     "  strategy_change: new producer context — the same failure over 3 iterations",
     '[it 2] strategy_change: reason="the same failure over 3 iterations" action="new producer context"'),
    (events.context_compacted(2, 2), None, "[it 2] context_compacted: epoch=2"),
    (events.repeated_output(2, "producer", "temperature raised"),
     "  producer repeated its previous reply word for word: temperature raised",
     '[it 2] repeated_output: role="producer" action="temperature raised"'),
    (events.migration(5, 2, 1, 6.0, [0, 2]), "  migration: iteration 5 (island 1) -> islands [0, 2]",
     '[it 5] migration: round=2 source_island=1 score=6.0 to=[0, 2]'),
    (events.error(2, "RuntimeError('boom')"), "  error:  — RuntimeError('boom')",
     "[it 2] error: message=\"RuntimeError('boom')\""),
    (events.status(2, "paused", "model endpoint down"), "  status:  — model endpoint down",
     '[it 2] status: status="paused" reason="model endpoint down"'),
    (events.run_finished(2, "stopped", "user: stop"), None,
     '[it 2] run_finished: status="stopped" stop_reason="user: stop"'),
]


@pytest.fixture()
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_every_kind_has_a_constructor_and_a_case() -> None:
    assert {e.kind for e, _, _ in CASES} == set(typing.get_args(events.Kind))


def test_each_kind_written_and_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, utc: None) -> None:
    monkeypatch.setattr("orchestrator.rundir.time.time", lambda: T0)
    log = EventLog(tmp_path / "events.jsonl")
    for event, _, _ in CASES:
        log.add(event)
    log.close()
    read = eventlog.tail(tmp_path / "events.jsonl", 100).events
    assert len(read) == len(CASES)
    for seq, (e, (event, live, line)) in enumerate(zip(read, CASES, strict=True), 1):
        assert list(e)[:4] == ["seq", "ts", "kind", "iteration"] and e["seq"] == seq and e["ts"] == T0
        assert format_event(e, live=True) == live, event.kind
        assert format_event(e) == f"22:13:20 #{seq} {line}", event.kind


def test_keyed_events_are_written_once_and_remember_their_time(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    log.add(events.iteration_started(1))
    started = log.time_of(events.iteration_key(1))
    log.add(events.iteration_started(1))  # a rerun of the node after a crash
    log.close()
    reopened = EventLog(path)  # a resumed run knows the keys (and their times) from the file
    reopened.add(events.iteration_started(1))
    assert reopened.time_of(events.iteration_key(1)) == started and reopened.time_of("nope") is None
    reopened.close()
    assert [json.loads(line)["key"] for line in path.read_text().splitlines()] == ["iteration-1"]


def test_a_check_records_only_exec_events() -> None:
    assert events.from_task(3, EXEC) == events.exec_event(3, EXEC)
    with pytest.raises(ValueError, match="only `exec`"):
        events.from_task(3, {"kind": "verdict", "verdict": "pass"})


def test_exec_fields_keep_whole_last_lines_and_a_short_command() -> None:
    out = "".join(f"line {i}\n" for i in range(1000))
    fields = exec_fields("check", "x" * 600, None, "missing", 0.12345, out, "")
    assert fields["stdout_tail"].endswith("line 999") and fields["stdout_tail"].startswith("line ")
    assert len(fields["stdout_tail"]) <= EXEC_TAIL_CHARS
    assert fields["cmd"] == "x" * 500 + " …" and fields["duration_s"] == 0.123 and fields["exit_code"] is None
    assert "log" not in fields


def _record(**changes: object) -> IterationRecord:
    base = dict(iteration=3, commit="abc", check=CHECK,
                verdict={"verdict": "fail", "score": 0.0, "findings": ["f1"], "check": CHECK.to_json(),
                         "review": None, "tokens": {"prompt": 1}},
                decision=Decision("iterate", "not accepted yet"), started_at=T0, ended_at=T0 + 5)
    return IterationRecord(**{**base, **changes})  # type: ignore[arg-type]


def test_iteration_record_round_trip(tmp_path: Path) -> None:
    record = _record()
    assert IterationRecord.from_json(json.loads(json.dumps(record.to_json()))) == record
    assert list(record.to_json()) == ["iteration", "commit", "check", "verdict", "decision", "started_at", "ended_at"]
    assert (record.verdict_kind, record.score, record.findings) == ("fail", 0.0, ["f1"])
    path = tmp_path / "0003.json"
    path.write_text(json.dumps(record.to_json()))
    assert read_record(path) == record


def test_a_record_written_before_started_at_still_reads() -> None:
    old = _record().to_json()
    del old["started_at"]
    assert IterationRecord.from_json(old).started_at is None


@pytest.mark.parametrize("broken", [[], {"iteration": 1}, {**_record().to_json(), "verdict": "pass"},
                                    {**_record().to_json(), "check": {"passed": True}},
                                    {**_record().to_json(), "iteration": "x"}])
def test_what_is_not_a_record_is_a_value_error(broken: object) -> None:
    with pytest.raises(ValueError, match="not an iteration record"):
        IterationRecord.from_json(broken)


def test_follow_reads_a_growing_file_by_offset_and_waits_for_a_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"  # does not exist yet: the follower waits for it
    first = json.dumps({"seq": 1, "kind": "plan"}) + "\n"
    second = json.dumps({"seq": 2, "kind": "iteration_started"})
    finished = threading.Event()
    seen: list[dict] = []
    seen_before_newline: list[int] = []

    def writer() -> None:
        time.sleep(0.2)
        with open(path, "a") as f:
            f.write(first + second[:7])  # a line still being written: not read until its newline comes
            f.flush()
            time.sleep(0.3)
            seen_before_newline.append(len(seen))
            f.write(second[7:] + "\n" + "{cut by a crash\n")
        finished.set()

    thread = threading.Thread(target=writer)
    thread.start()
    for event in eventlog.follow(path, 0, finished.is_set, poll_s=0.05):
        seen.append(event)
    thread.join()
    assert seen_before_newline == [1]
    assert [e.get("seq") for e in seen] == [1, 2, None] and seen[2]["kind"] == "unreadable"
    assert seen[1]["_offset"] == len(first) and eventlog.as_written(seen[1]) == json.loads(second)
    end = eventlog.file_end(path)
    assert end == path.stat().st_size and eventlog.read_from(path, end).events == []


def test_readme_documents_every_kind_and_record_field() -> None:
    readme = (Path(__file__).parents[2] / "orchestrator" / "README.md").read_text(encoding="utf-8")
    start = readme.index("### Events")
    table = readme[start:readme.index("\n## ", start)]
    documented = set(re.findall(r"^\| `(\w+)`(?:, `(\w+)`)?", table, re.M))
    kinds = {k for pair in documented for k in pair if k}
    assert kinds == set(typing.get_args(events.Kind))
    record_row = next(line for line in readme.splitlines() if line.startswith("| `iterations/NNNN.json`"))
    for name in IterationRecord.__dataclass_fields__:
        assert f"`{name}`" in record_row, name
