"""The one reader of a run's events.jsonl (the viewer, `m3lab runs logs`, a foreground run's progress): by byte
offset, so a log of any size opens in constant time. The writer is `rundir.EventLog`; the schema `events.py`.

Offsets are byte positions of line starts. A page of events carries the offsets on both sides, so the page
can ask for older events (`tail(before=start)`) or follow new ones (`read_from(end)`, `follow`). A trailing line
without its newline is still being written and is left for the next read. Each event read carries its line's
offset as `_offset`.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_BLOCK = 64 * 1024


@dataclass(frozen=True)
class EventPage:
    """Consecutive events and the byte range [start, end) of the file they came from."""

    events: list[dict[str, Any]] = field(default_factory=list)
    start: int = 0
    end: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"events": self.events, "start": self.start, "end": self.end}


def _parse(line: bytes, offset: int) -> dict[str, Any]:
    """One event; an unparsable line becomes a visible `unreadable` event instead of breaking the page."""
    try:
        event = json.loads(line)
        if not isinstance(event, dict):
            raise ValueError("not an object")
    except ValueError:
        event = {"kind": "unreadable", "seq": None, "ts": None, "iteration": None,
                 "text": line[:200].decode("utf-8", "replace")}
    event["_offset"] = offset
    return event


def _complete_end(f: Any, size: int) -> int:
    """Offset just after the last newline of the file (the end of its complete lines)."""
    pos = size
    while pos > 0:
        start = max(0, pos - _BLOCK)
        f.seek(start)
        chunk = f.read(pos - start)
        idx = chunk.rfind(b"\n")
        if idx >= 0:
            return start + idx + 1
        pos = start
    return 0


def file_end(path: Path) -> int:
    """Offset after the last complete line (where a follower starts reading)."""
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return _complete_end(f, os.fstat(f.fileno()).st_size)


def tail(path: Path, limit: int = 200, before: int | None = None) -> EventPage:
    """The last `limit` complete events that start before byte offset `before` (default: end of file)."""
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    if not path.exists():
        return EventPage()
    with open(path, "rb") as f:
        end = _complete_end(f, os.fstat(f.fileno()).st_size)
        if before is not None:
            end = max(0, min(before, end))
        # Read backwards block by block until the window holds limit+1 newlines (or the file start).
        start, buf = end, b""
        while start > 0 and buf.count(b"\n") <= limit:
            new_start = max(0, start - _BLOCK)
            f.seek(new_start)
            buf = f.read(start - new_start) + buf
            start = new_start
    lines = buf.split(b"\n")[:-1] if buf.endswith(b"\n") else buf.split(b"\n")
    if start > 0:
        lines = lines[1:]  # the first piece may be a partial line: it belongs to an older page
    lines = lines[-limit:]
    first = end - sum(len(line) + 1 for line in lines)
    events, pos = [], first
    for line in lines:
        if line.strip():
            events.append(_parse(line, pos))
        pos += len(line) + 1
    return EventPage(events, first, end)


def read_from(path: Path, offset: int, max_bytes: int = 1 << 20) -> EventPage:
    """Complete events from byte `offset` on, at most about `max_bytes` of them (always at least one line)."""
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if not path.exists():
        return EventPage(start=offset, end=offset)
    with open(path, "rb") as f:
        f.seek(offset)
        buf = f.read(max_bytes)
        cut = buf.rfind(b"\n")
        if cut < 0 and len(buf) == max_bytes:  # a single line longer than max_bytes: read it whole
            buf += f.readline()
            cut = buf.rfind(b"\n")
    if cut < 0:
        return EventPage(start=offset, end=offset)
    events, pos = [], offset
    for line in buf[:cut].split(b"\n"):
        if line.strip():
            events.append(_parse(line, pos))
        pos += len(line) + 1
    return EventPage(events, offset, offset + cut + 1)


def as_written(event: dict[str, Any]) -> dict[str, Any]:
    """The event without the reader's `_offset`: the object of its line."""
    return {k: v for k, v in event.items() if k != "_offset"}


def follow(path: Path, offset: int, done: Callable[[], bool], poll_s: float = 0.3) -> Iterator[dict[str, Any]]:
    """Every complete event from byte `offset` on, as the file grows (it may not exist yet); ends once a read
    finds nothing new and `done()` is true, so what was written before `done` turned true is still read."""
    while True:
        page = read_from(path, offset)
        yield from page.events
        offset = page.end
        if not page.events:
            if done():
                return
            time.sleep(poll_s)


def _next_line_start(f: Any, pos: int) -> int:
    """Start of the first line that begins at or after byte `pos`."""
    if pos == 0:
        return 0
    f.seek(pos - 1)
    f.readline()
    return f.tell()


def _iteration_from(f: Any, pos: int, end: int) -> float:
    """Iteration of the first event at or after line start `pos` that has one (infinity past the end)."""
    f.seek(pos)
    while f.tell() < end:
        line = f.readline()
        try:
            iteration = json.loads(line).get("iteration")
        except (ValueError, AttributeError):
            continue
        if isinstance(iteration, int):
            return iteration
    return float("inf")


def _lower_bound(f: Any, iteration: int, end: int) -> int:
    """First line start whose next numbered event has an iteration >= `iteration` (binary search on bytes:
    the spine numbers events with non-decreasing iterations)."""
    lo, hi = 0, end
    while lo < hi:
        mid = (lo + hi) // 2
        if _iteration_from(f, _next_line_start(f, mid), end) >= iteration:
            hi = mid
        else:
            lo = mid + 1
    return min(_next_line_start(f, lo), end)


def iteration_events(path: Path, iteration: int, max_bytes: int = 2 << 20) -> tuple[EventPage, bool]:
    """Events of one iteration, found without scanning the log; True when cut at `max_bytes`."""
    if not path.exists():
        return EventPage(), False
    with open(path, "rb") as f:
        end = _complete_end(f, os.fstat(f.fileno()).st_size)
        start = _lower_bound(f, iteration, end)
        stop = _lower_bound(f, iteration + 1, end)
    page = read_from(path, start, max_bytes=min(max_bytes, max(stop - start, 1)))
    truncated = page.end < stop
    events = [e for e in page.events if e["_offset"] < stop]
    return EventPage(events, start, min(page.end, stop)), truncated
