"""The run directory `runs/<id>/` (layout in orchestrator/README.md): metadata, the append-only event log and
the journal that makes side effects happen once across crashes and resumes."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from orchestrator.events import Event
from sandboxes.engine import pid_alive

T = TypeVar("T")

STATUSES = ("running", "paused", "succeeded", "stopped", "failed")
ENDED = ("succeeded", "stopped", "failed")
"""Statuses of a run with no process and nothing queued: steering or stopping it writes nothing."""
RESERVE_BYTES = 256 << 10
"""Space a running run keeps in `.reserve`: freed when the disk fills, so the pause can still be recorded."""
NEW_PREFIX = ".new-"
"""A run folder being created is named `.new-<id>.<pid>` until its run.json is in it (never listed)."""


class UnreadableRun(ValueError):
    """A run folder whose run.json cannot be read or is not a run's metadata; the message is the reason."""


def load_meta(run_dir: Path) -> dict[str, Any]:
    """run.json of `run_dir`, checked to be a run's metadata (an object with an id and a task kind);
    `UnreadableRun` with the reason otherwise (listings show such runs as unreadable, never crash)."""
    path = Path(run_dir) / "run.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableRun(f"cannot read run.json: {exc.strerror if isinstance(exc, OSError) else exc}") from None
    except json.JSONDecodeError as exc:
        raise UnreadableRun(f"run.json is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise UnreadableRun(f"run.json is not an object but {type(meta).__name__}")
    task = meta.get("task")
    if not isinstance(meta.get("id"), str) or not isinstance(task, dict) or not isinstance(task.get("kind"), str):
        raise UnreadableRun("run.json lacks the run id or the task kind")
    return meta


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON so that a reader (or a crash) never sees half a file; a failed write (disk full) leaves
    the old file and no temp file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def disk_full(exc: BaseException) -> bool:
    """True when `exc` (or what caused it) says the disk or quota is full: OSError ENOSPC/EDQUOT, SQLite's
    "database or disk is full", a tool's "No space left on device"."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(exc, sqlite3.OperationalError) and "disk is full" in str(exc):
            return True
        if "No space left on device" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def new_run_id(kind: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{secrets.token_hex(2)}"


class EventLog:
    """events.jsonl: one JSON object a line, flushed per event, with an increasing `seq` (schema and
    constructors: orchestrator/events.py).

    An event may carry an idempotency `key`: an event whose key is already in the log is not written again,
    so a node that reruns after a crash does not record its side effects twice."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._seq, self._keys = self._scan()
        self._file = open(path, "a", encoding="utf-8")
        if path.stat().st_size and not path.read_bytes()[-1:] == b"\n":
            self._file.write("\n")  # a crash cut the last line: never glue the next event onto it

    def _scan(self) -> tuple[int, dict[str, float]]:
        seq, keys = 0, dict[str, float]()
        if self.path.exists():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        event = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut by a crash; the next append starts on a fresh line
                    seq = max(seq, int(event.get("seq", 0)))
                    if "key" in event:
                        keys.setdefault(event["key"], event.get("ts"))
        return seq, keys

    @property
    def last_seq(self) -> int:
        return self._seq

    def has(self, key: str) -> bool:
        return key in self._keys

    def time_of(self, key: str) -> float | None:
        """`ts` of the event written with `key` (None when there is none)."""
        return self._keys.get(key)

    def add(self, event: Event) -> None:
        with self._lock:
            if event.key is not None and event.key in self._keys:
                return
            self._seq += 1
            ts = round(time.time(), 3)
            line: dict[str, Any] = {"seq": self._seq, "ts": ts, "kind": event.kind, "iteration": event.iteration,
                                    **({"island": event.island} if event.island is not None else {}),
                                    **event.fields}
            if event.key is not None:
                line["key"] = event.key
                self._keys[event.key] = ts
            self._file.write(json.dumps(line, default=str) + "\n")
            self._file.flush()

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:  # a disk-full flush of the last event: its cut line is skipped when read
            pass


class RunDir:
    """Paths and small read/write helpers of one run directory."""

    def __init__(self, path: Path):
        self.path = Path(path).absolute()  # sandboxes bind-mount its folders: never a relative path
        self._events: EventLog | None = None
        # [issue 15] set by orchestrator/store: mirrors each run.json write into the run index, fenced by the
        # owner's lease (raises LeaseLost before the file is written when another worker took the run over).
        self.on_meta: Callable[[Path, dict[str, Any]], None] | None = None

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def workspace(self) -> Path:
        return self.path / "workspace"

    @property
    def git_dir(self) -> Path:
        """The run's bare git repository: outside the workspace, so no sandbox can reach it."""
        return self.path / "git"

    @property
    def artifacts(self) -> Path:
        return self.path / "artifacts"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def meta_path(self) -> Path:
        return self.path / "run.json"

    def iteration_path(self, iteration: int) -> Path:
        return self.path / "iterations" / f"{iteration:04d}.json"

    @property
    def events(self) -> EventLog:
        if self._events is None:
            self._events = EventLog(self.path / "events.jsonl")
        return self._events

    def create(self) -> None:
        for sub in ("workspace", "artifacts", "logs", "iterations", "journal", "control"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)

    def reserve_space(self) -> None:
        """Hold `RESERVE_BYTES` of real blocks (OSError ENOSPC when the disk has not that much room)."""
        path = self.path / ".reserve"
        if path.exists() and path.stat().st_size >= RESERVE_BYTES:
            return
        try:
            with open(path, "wb") as f:
                f.write(b"\0" * RESERVE_BYTES)
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            path.unlink(missing_ok=True)
            raise

    def release_space(self) -> None:
        """Give the reserve back to the file system (the disk is full: the pause must be written)."""
        (self.path / ".reserve").unlink(missing_ok=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run's lock: status changes from outside the loop (resume, stop, steer) check the status
        and write under it, so two of them never both see `paused` and act."""
        with open(self.path / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def read_meta(self) -> dict[str, Any]:
        return load_meta(self.path)

    def update_meta(self, **fields: Any) -> dict[str, Any]:
        meta = self.read_meta() if self.meta_path.exists() else {}
        meta.update(fields)
        meta["updated_at"] = time.time()
        if self.on_meta is not None:  # [issue 15]
            self.on_meta(self.path, meta)
        atomic_write_json(self.meta_path, meta)
        return meta

    def once(self, key: str, compute: Callable[[], T], encode: Callable[[T], Any] = lambda x: x,
             decode: Callable[[Any], T] = lambda x: x) -> T:
        """Run `compute` once per key across crashes: its result is journaled and replayed on a rerun."""
        if self._journal(key).exists():
            return self.recall(key, decode)
        value = compute()
        atomic_write_json(self._journal(key), encode(value))
        return value

    def recall(self, key: str, decode: Callable[[Any], T] = lambda x: x) -> T:
        """What `once` journaled under `key` (a later step reads what an earlier one computed); KeyError if
        nothing was."""
        path = self._journal(key)
        if not path.exists():
            raise KeyError(f"nothing journaled under {key!r} in run {self.id}")
        return decode(json.loads(path.read_text(encoding="utf-8")))

    def _journal(self, key: str) -> Path:
        return self.path / "journal" / f"{key}.json"

    def write_log(self, name: str, text: str) -> Path:
        """Full text of a tool output/exec too large for events; returns the path relative to the run."""
        path = self.logs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path.relative_to(self.path)

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None


def create_run_dir(runs_dir: Path, run_id: str, fill: Callable[[RunDir], None]) -> RunDir:
    """Create `runs_dir/run_id` whole: `fill` lays it out (run.json last) under a temporary name, which is then
    renamed. A kill at any moment leaves either no run or a complete, resumable one; a failure (disk full)
    removes the temporary folder. Leftovers of killed creators are removed here too."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(runs_dir)
    temp = RunDir(runs_dir / f"{NEW_PREFIX}{run_id}.{os.getpid()}")
    try:
        temp.create()
        fill(temp)
        temp.close()
        os.rename(temp.path, runs_dir / run_id)  # fails if the id exists: never over another run
    except BaseException:
        temp.close()
        shutil.rmtree(temp.path, ignore_errors=True)
        raise
    return RunDir(runs_dir / run_id)


def _remove_abandoned(runs_dir: Path) -> None:
    for path in runs_dir.glob(f"{NEW_PREFIX}*"):
        pid = path.name.rsplit(".", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def effective_status(meta: Mapping[str, Any]) -> str:
    """A run whose process died while `running` is really `paused` (crashed): resumable."""
    status = meta.get("status", "paused")
    pid = meta.get("pid")
    if status == "running" and not (pid and pid_alive(int(pid))):
        return "paused"
    return status


def list_runs(runs_dir: Path) -> list[RunDir]:
    """Run directories under runs_dir (those with a run.json, readable or not), newest first; folders being
    created (hidden names) are not runs yet."""
    if not runs_dir.exists():
        return []
    runs = [RunDir(p) for p in runs_dir.iterdir() if not p.name.startswith(".") and (p / "run.json").exists()]
    return sorted(runs, key=lambda r: r.id, reverse=True)


def find_run(runs_dir: Path, run_id: str) -> RunDir:
    """A run by id or unique id prefix/suffix."""
    exact = runs_dir / run_id
    if (exact / "run.json").exists():
        return RunDir(exact)
    matches = [r for r in list_runs(runs_dir) if r.id.startswith(run_id) or r.id.endswith(run_id)]
    if len(matches) != 1:
        raise KeyError(f"no unique run matches {run_id!r} in {runs_dir} ({len(matches)} matches)")
    return matches[0]
