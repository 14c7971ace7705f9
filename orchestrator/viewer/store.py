"""Read-only access to the run directories under one runs folder (the contract in orchestrator/README.md).

The viewer never writes into a run except through orchestrator.control (steer, stop). Everything here is
cheap per call: run.json and iteration files are small, the event log is read by offset (eventlog.py).
"""
from __future__ import annotations

import json
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.events import IterationRecord, read_record
from orchestrator.rundir import UnreadableRun, load_meta
from orchestrator.store import RunIndex, StoreSettings, StoreUnavailable
from sandboxes import hostfs

MAX_FILE_BYTES = 64 << 20
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_ITERATION_FILE = re.compile(r"^(\d+)\.json$")


class RunNotFound(LookupError):
    """No run directory with that id (or the id is not a plain directory name)."""


class UnsafePath(ValueError):
    """A requested file lies outside the run directory."""


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object, or None when the file is missing or half-written (the run is writing it now)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class RunSummary:
    """One row of the runs page."""

    id: str
    kind: str
    title: str
    status: str
    stop_reason: str | None
    iteration: int
    best_score: float | None
    best_iteration: int | None
    budget: dict[str, Any]
    created_at: Any
    updated_at: Any

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def summarize(run_id: str, meta: dict[str, Any]) -> RunSummary:
    """A runs-page row from run.json; missing fields stay empty rather than failing the whole page."""
    task, budget = meta.get("task"), meta.get("budget")
    task = task if isinstance(task, dict) else {}
    return RunSummary(
        id=run_id,
        kind=str(task.get("kind", "?")),
        title=str(task.get("title") or ""),
        status=str(meta.get("status", "unknown")),
        stop_reason=meta.get("stop_reason"),
        iteration=int(meta.get("iteration") or 0),
        best_score=meta.get("best_score"),
        best_iteration=meta.get("best_iteration"),
        budget=budget if isinstance(budget, dict) else {},
        created_at=meta.get("created_at"),
        updated_at=meta.get("updated_at"),
    )


def _summary_or_reason(run_dir: Path) -> RunSummary:
    try:
        return summarize(run_dir.name, load_meta(run_dir))
    except (UnreadableRun, TypeError, ValueError) as exc:  # also fields of the wrong type ("iteration": "x")
        return RunSummary(id=run_dir.name, kind="?", title="", status="unreadable", stop_reason=str(exc),
                          iteration=0, best_score=None, best_iteration=None, budget={}, created_at=None,
                          updated_at=None)


def summary_of_index_row(row: dict[str, Any]) -> RunSummary:
    """A runs-page row from the run index (orchestrator/store/index.py), with the lease's effective status."""
    return RunSummary(id=row["id"], kind=row["kind"], title=row["title"], status=row["status"],
                      stop_reason=row["stop_reason"], iteration=row["iteration"], best_score=row["best_score"],
                      best_iteration=row["best_iteration"], budget=row["budget"] or {},
                      created_at=row["created_at"], updated_at=row["updated_at"])


class RunStore:
    """The runs under `runs_dir`; with a PostgreSQL `store`, the run list comes from its run index."""

    def __init__(self, runs_dir: Path, store: StoreSettings | None = None) -> None:
        self.runs_dir = runs_dir
        self.store = store if store is not None and store.enabled else None

    def run_dir(self, run_id: str) -> Path:
        """The directory of run `run_id`; RunNotFound for unknown or malformed ids."""
        if not _RUN_ID.match(run_id):
            raise RunNotFound(f"not a run id: {run_id!r}")
        path = self.runs_dir / run_id
        if not (path / "run.json").is_file():
            raise RunNotFound(f"no run {run_id!r} in {self.runs_dir}")
        return path

    def list_runs(self) -> list[RunSummary]:
        """Every run, newest first: one query on the run index when a store is configured (status from the
        leases: owners may run on other nodes), else a scan of the run folders."""
        if self.store is not None:
            try:
                return [summary_of_index_row(r) for r in RunIndex(self.store).rows(self.runs_dir)]
            except StoreUnavailable as exc:  # the folders are the record: show them rather than no page
                logging.getLogger(__name__).warning("run list from the run folders: %s", exc)
        return self.scan_runs()

    def scan_runs(self) -> list[RunSummary]:
        """Every run folder with a run.json, newest first; one whose run.json cannot be read is a row with
        status "unreadable" and the reason, never an error of the whole page."""
        if not self.runs_dir.is_dir():
            return []
        rows = []
        for child in self.runs_dir.iterdir():
            if _RUN_ID.match(child.name) and (child / "run.json").exists():
                rows.append(_summary_or_reason(child))
        return sorted(rows, key=_created_key, reverse=True)

    def run_meta(self, run_id: str) -> dict[str, Any]:
        """run.json as written by the spine."""
        meta = _read_json(self.run_dir(run_id) / "run.json")
        if meta is None:
            raise RunNotFound(f"run.json of {run_id!r} is unreadable")
        return meta

    def iteration_numbers(self, run_id: str) -> list[int]:
        """Finished iterations, from the listing of iterations/ (files are not opened)."""
        folder = self.run_dir(run_id) / "iterations"
        if not folder.is_dir():
            return []
        found = (_ITERATION_FILE.match(name) for name in os.listdir(folder))
        return sorted(int(m.group(1)) for m in found if m)

    def iteration(self, run_id: str, number: int) -> IterationRecord:
        """iterations/NNNN.json; RunNotFound when that iteration has not finished (or its file is not a record)."""
        record = _read_record(self.run_dir(run_id), number)
        if record is None:
            raise RunNotFound(f"run {run_id!r} has no finished iteration {number}")
        return record

    def iteration_rows(self, run_id: str, numbers: list[int]) -> list[dict[str, Any]]:
        """Timeline rows (verdict, decision, score) for the given iterations."""
        run_dir = self.run_dir(run_id)
        return [timeline_row(n, _read_record(run_dir, n)) for n in numbers]

    def file(self, run_id: str, relative: str, limit: int = MAX_FILE_BYTES) -> bytes:
        """The bytes of a regular file inside the run directory, reached without following any link (much of a
        run is sandbox-written); UnsafePath for anything that escapes or passes through a link."""
        root = self.run_dir(run_id)
        try:
            return hostfs.read_bytes(root, relative, limit)
        except FileNotFoundError:
            raise RunNotFound(f"no file {relative!r} in run {run_id!r}") from None
        except IsADirectoryError:
            raise RunNotFound(f"{relative!r} in run {run_id!r} is a folder") from None
        except hostfs.UnsafePath as exc:
            raise UnsafePath(str(exc)) from None

    def log_files(self, run_id: str, number: int) -> list[str]:
        """Files under logs/ whose first path part names the iteration as a 4-digit number (logs/0003/...,
        logs/0003-check.log, logs/check-0003-crash.txt)."""
        logs = self.run_dir(run_id) / "logs"
        if not logs.is_dir():
            return []
        token = re.compile(rf"(?<!\d){number:04d}(?!\d)")
        return [f"logs/{rel}" for rel in _regular_files(self.run_dir(run_id), "logs") if token.search(rel.split("/")[0])]

    def artifact_files(self, run_id: str, number: int, limit: int = 100) -> list[str]:
        """Task artifacts of one iteration: files under artifacts/ with a path part named NNNN (e.g.
        artifacts/kernel/sources/0003.py, artifacts/paper/iterations/0003/grades.json); at most `limit`."""
        run_dir = self.run_dir(run_id)
        name = f"{number:04d}"
        found: list[str] = []
        for rel in _regular_files(run_dir, "artifacts"):
            if any(Path(part).stem == name for part in rel.split("/")):
                found.append(f"artifacts/{rel}")
                if len(found) >= limit:
                    break
        return found


def _regular_files(run_dir: Path, folder: str) -> list[str]:
    """Folder-relative names of the regular files under run_dir/folder; links are not followed."""
    try:
        return [rel for rel, st in hostfs.walk(run_dir, folder) if stat.S_ISREG(st.st_mode)]
    except (OSError, ValueError):
        return []


def _created_key(row: RunSummary) -> tuple[int, float, str]:
    """Sort key for created_at, which is unix seconds in the spine's run.json (ISO text tolerated)."""
    value = row.created_at
    if isinstance(value, (int, float)):
        return (1, float(value), row.id)
    return (0, 0.0, f"{value or ''}{row.id}")


def _read_record(run_dir: Path, number: int) -> IterationRecord | None:
    """The record, or None when the file is missing, half-written (the run is writing it now) or not a record."""
    try:
        return read_record(run_dir / "iterations" / f"{number:04d}.json")
    except (OSError, ValueError):
        return None


def timeline_row(number: int, record: IterationRecord | None) -> dict[str, Any]:
    """The few fields the iteration timeline shows (empty for a record that cannot be read)."""
    if record is None:
        return {"iteration": number, "commit": None, "passed": None, "score": None, "verdict": None, "action": None,
                "started_at": None, "ended_at": None}
    return {
        "iteration": number,
        "commit": record.commit,
        "passed": record.check.passed,
        "score": record.check.score,
        "verdict": record.verdict_kind,
        "action": record.decision.action,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
    }
