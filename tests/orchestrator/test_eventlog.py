"""The event log reader: tail, follow and per-iteration ranges by byte offset."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator import eventlog


def _write(path: Path, events: list[dict]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for e in events:
            f.write(json.dumps(e) + "\n")


def _events(n: int, per_iteration: int = 5) -> list[dict]:
    out = [{"seq": 0, "ts": 0, "kind": "run_started", "iteration": None}]
    for i in range(1, n + 1):
        out.append({"seq": i, "ts": i, "kind": "exec", "iteration": 1 + (i - 1) // per_iteration})
    return out


def test_tail_returns_last_events_and_pages_backwards(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    _write(log, _events(1000))
    page = eventlog.tail(log, 10)
    assert [e["seq"] for e in page.events] == list(range(991, 1001))
    assert page.end == log.stat().st_size
    older = eventlog.tail(log, 10, before=page.start)
    assert [e["seq"] for e in older.events] == list(range(981, 991))
    assert older.end == page.start
    everything, seen, before = [], 0, None
    while before != 0:
        p = eventlog.tail(log, 97, before=before)
        everything = p.events + everything
        before = p.start
        seen += 1
    assert [e["seq"] for e in everything] == list(range(0, 1001))


def test_partial_last_line_is_left_for_later(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    _write(log, _events(3))
    with open(log, "a") as f:
        f.write('{"seq": 4, "kind": "ex')  # the writer is mid-line
    page = eventlog.tail(log, 50)
    assert [e["seq"] for e in page.events] == [0, 1, 2, 3]
    follow = eventlog.read_from(log, page.end)
    assert follow.events == [] and follow.end == page.end
    with open(log, "a") as f:
        f.write('ec", "iteration": 1}\n')
    follow = eventlog.read_from(log, page.end)
    assert [e["seq"] for e in follow.events] == [4] and follow.end == log.stat().st_size


def test_unreadable_line_becomes_visible_event(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    log.write_text('{"seq": 1, "kind": "plan", "iteration": null}\nnot json\n')
    kinds = [e["kind"] for e in eventlog.tail(log, 10).events]
    assert kinds == ["plan", "unreadable"]


def test_iteration_events_found_by_binary_search(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    events = _events(500)
    events.insert(200, {"seq": -1, "ts": 0, "kind": "steer", "iteration": None, "text": "go faster"})
    _write(log, events)
    page, truncated = eventlog.iteration_events(log, 37)
    assert not truncated
    assert [e["seq"] for e in page.events if e["kind"] == "exec"] == list(range(181, 186))
    assert {e["iteration"] for e in page.events} == {37}
    last, _ = eventlog.iteration_events(log, 100)
    assert [e["seq"] for e in last.events] == list(range(496, 501))
    missing, _ = eventlog.iteration_events(log, 101)
    assert missing.events == []


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        eventlog.tail(tmp_path / "x", 0)
    with pytest.raises(ValueError):
        eventlog.read_from(tmp_path / "x", -1)
    assert eventlog.tail(tmp_path / "missing.jsonl").events == []
