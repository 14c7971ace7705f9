"""Requests from outside a run (CLI, viewer) to the run's process: steering and stop.

Both are files in the run directory, so they work whether the run is live, paused or crashed: the loop reads
them at its next step, and a resumed run sees what was asked while it was down."""
from __future__ import annotations

import json
import time
from pathlib import Path


def add_steer(run_dir: Path, text: str) -> None:
    """Queue a steering requirement; the producer sees it at its next step."""
    text = text.strip()
    if not text:
        raise ValueError("steering text is empty")
    line = json.dumps({"ts": time.time(), "text": text})
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


def request_stop(run_dir: Path, reason: str = "user") -> None:
    """Ask the run to stop cleanly at its next step (it writes its report and ends as `stopped`)."""
    control = run_dir / "control"
    control.mkdir(exist_ok=True)
    (control / "stop").write_text(reason, encoding="utf-8")


def stop_requested(run_dir: Path) -> str | None:
    """The stop reason if a stop was requested, else None."""
    path = run_dir / "control" / "stop"
    return path.read_text(encoding="utf-8").strip() or "user" if path.exists() else None


def clear_stop(run_dir: Path) -> None:
    """Forget a stop request (a user resuming a stopped run wants it to go on)."""
    (run_dir / "control" / "stop").unlink(missing_ok=True)
