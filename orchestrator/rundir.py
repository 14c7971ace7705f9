"""The run directory `runs/<id>/` (layout in orchestrator/README.md): metadata, the append-only event log and
the journal that makes side effects happen once across crashes and resumes."""
from __future__ import annotations

import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from sandboxes.reaper import pid_alive

T = TypeVar("T")

STATUSES = ("running", "paused", "succeeded", "stopped", "failed")


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON so that a reader (or a crash) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def new_run_id(kind: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{secrets.token_hex(2)}"


class EventLog:
    """events.jsonl: one JSON object a line, flushed per event, with an increasing `seq`.

    An event may carry an idempotency `key`: an event whose key is already in the log is not written again,
    so a node that reruns after a crash does not record its side effects twice."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._seq, self._keys = self._scan()
        self._file = open(path, "a", encoding="utf-8")
        if path.stat().st_size and not path.read_bytes()[-1:] == b"\n":
            self._file.write("\n")  # a crash cut the last line: never glue the next event onto it

    def _scan(self) -> tuple[int, set[str]]:
        seq, keys = 0, set()
        if self.path.exists():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        event = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut by a crash; the next append starts on a fresh line
                    seq = max(seq, int(event.get("seq", 0)))
                    if "key" in event:
                        keys.add(event["key"])
        return seq, keys

    @property
    def last_seq(self) -> int:
        return self._seq

    def has(self, key: str) -> bool:
        return key in self._keys

    def append(self, kind: str, iteration: int | None = None, key: str | None = None, **fields: Any) -> None:
        with self._lock:
            if key is not None and key in self._keys:
                return
            self._seq += 1
            event: dict[str, Any] = {"seq": self._seq, "ts": round(time.time(), 3), "kind": kind,
                                     "iteration": iteration, **fields}
            if key is not None:
                event["key"] = key
                self._keys.add(key)
            self._file.write(json.dumps(event, default=str) + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()


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

    def read_meta(self) -> dict[str, Any]:
        return json.loads(self.meta_path.read_text(encoding="utf-8"))

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
        path = self.path / "journal" / f"{key}.json"
        if path.exists():
            return decode(json.loads(path.read_text(encoding="utf-8")))
        value = compute()
        atomic_write_json(path, encode(value))
        return value

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


def effective_status(meta: Mapping[str, Any]) -> str:
    """A run whose process died while `running` is really `paused` (crashed): resumable."""
    status = meta.get("status", "paused")
    pid = meta.get("pid")
    if status == "running" and not (pid and pid_alive(int(pid))):
        return "paused"
    return status


def list_runs(runs_dir: Path) -> list[RunDir]:
    """Run directories under runs_dir, newest first."""
    if not runs_dir.exists():
        return []
    runs = [RunDir(p) for p in runs_dir.iterdir() if (p / "run.json").exists()]
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
