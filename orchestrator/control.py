"""Requests from outside a run (CLI, viewer) to the run's process: steering and stop.

Both are files in the run directory, so they work whether the run is live, paused or crashed: the loop reads
them at its next step, and a resumed run sees what was asked while it was down. A run that has ended
(succeeded, stopped, failed) has no next step: asking it anything raises `RunEnded` and writes nothing."""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from orchestrator import events
from orchestrator.rundir import ENDED, RunDir, effective_status


class RunEnded(ValueError):
    """Steering or stopping a run that has ended; nothing was written."""


StatusOf = Callable[[Mapping[str, Any]], str]
"""The effective status of a run from its run.json (pid-based here; the run index's lease with a store)."""


def _refuse_ended(run: RunDir, what: str, status_of: StatusOf = effective_status) -> str:
    """The run's status; `RunEnded` when it has ended (call with the run's lock held)."""
    status = status_of(run.read_meta())
    if status in ENDED:
        hint = "" if status == "succeeded" else f"; resume it first (`m3lab runs resume {run.id}`)"
        raise RunEnded(f"run {run.id} has ended ({status}): nothing to {what}{hint}")
    return status


def add_steer(run_dir: Path, text: str, status_of: StatusOf = effective_status) -> None:
    """Queue a steering requirement; the producer sees it at its next step. `RunEnded` for an ended run."""
    text = text.strip()
    if not text:
        raise ValueError("steering text is empty")
    line = json.dumps({"ts": time.time(), "text": text})
    run = RunDir(run_dir)
    with run.locked():
        _refuse_ended(run, "steer", status_of)
        with open(run_dir / "steer.jsonl", "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()


def read_steers(run_dir: Path, start: int = 0) -> list[str]:
    """Steering texts from index `start` on (the loop keeps how many it has consumed)."""
    path = run_dir / "steer.jsonl"
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines[start:] if line.strip()]


def request_stop(run_dir: Path, reason: str = "user", status_of: StatusOf = effective_status) -> str:
    """Ask the run to stop cleanly at its next step (it writes its report and ends as `stopped`); a run with
    no live process (paused, crashed) is marked stopped at once. Returns the status the run had; `RunEnded`
    for an ended run."""
    run = RunDir(run_dir)
    with run.locked():
        status = _refuse_ended(run, "stop", status_of)
        control = run_dir / "control"
        control.mkdir(exist_ok=True)
        (control / "stop").write_text(reason, encoding="utf-8")
        if status == "paused":
            message = f"{reason}: stopped while paused"
            run.update_meta(status="stopped", stop_reason=message, pid=None)
            run.events.add(events.run_finished(run.read_meta().get("iteration"), "stopped", message))
            run.close()
        return status


def stop_requested(run_dir: Path) -> str | None:
    """The stop reason if a stop was requested, else None."""
    path = run_dir / "control" / "stop"
    return path.read_text(encoding="utf-8").strip() or "user" if path.exists() else None


def clear_stop(run_dir: Path) -> None:
    """Forget a stop request (a user resuming a stopped run wants it to go on)."""
    (run_dir / "control" / "stop").unlink(missing_ok=True)
