"""The run index: one row per run in PostgreSQL, kept in step with run.json, so that listing 1,000 runs is one
query instead of 1,000 file reads, and so that status on a cluster comes from leases rather than local pids.

Writers: the run's owner mirrors every run.json write through `RunIndex.write` (fenced by its lease, see
leases.py); the CLI mirrors its own few writes (a stop while paused) and `sync_folder` imports runs made before
the store was configured. run.json stays the record of a run; the index is a projection of it."""
from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.store.db import pool
from orchestrator.store.settings import StoreSettings

# Statuses of run.json plus the one a cluster submission adds before any worker picked the run up.
ACTIVE = ("queued", "running")
_COLUMNS = ("id", "kind", "title", "path", "status", "stop_reason", "iteration", "tokens", "elapsed_s",
            "best_score", "best_iteration", "created_at", "updated_at", "budget")


class LeaseLost(RuntimeError):
    """This process no longer owns the run (its lease expired and another worker took the run over)."""


def row_of_meta(path: Path, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The index columns of one run.json."""
    from psycopg.types.json import Jsonb

    task = meta.get("task") or {}
    budget = meta["budget"] if isinstance(meta.get("budget"), dict) else {}
    used = budget.get("used", {})
    return {"id": meta.get("id") or path.name, "kind": task.get("kind", "?"), "title": task.get("title", ""),
            "path": str(path), "status": meta.get("status", "paused"),
            "stop_reason": str(meta.get("stop_reason", ""))[:2000], "iteration": int(meta.get("iteration", 0)),
            "tokens": int(used.get("tokens", 0)), "elapsed_s": float(used.get("elapsed_s", 0.0)),
            "best_score": float(meta.get("best_score", 0.0)), "best_iteration": int(meta.get("best_iteration", 0)),
            "created_at": meta.get("created_at"), "updated_at": meta.get("updated_at") or time.time(),
            "budget": Jsonb(budget)}


_UPSERT = (f"INSERT INTO m3lab_runs ({', '.join(_COLUMNS)}) VALUES ({', '.join('%(' + c + ')s' for c in _COLUMNS)}) "
           "ON CONFLICT (id) DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS[1:]))
# The effective status: a `running` row whose lease ran out has no live owner: it is paused (resumable).
_STATUS = ("CASE WHEN status = 'running' AND (lease_until IS NULL OR lease_until < now()) THEN 'paused' "
           "ELSE status END AS status")


class RunIndex:
    """Reads and writes of the m3lab_runs table."""

    def __init__(self, settings: StoreSettings):
        self.settings = settings
        self.pool = pool(settings.url, settings.pool_size)

    def upsert(self, path: Path, meta: Mapping[str, Any]) -> None:
        """Mirror a run.json written by someone who does not drive the run (creation, CLI, folder import)."""
        with self.pool.connection() as conn:
            conn.execute(_UPSERT, row_of_meta(path, meta))

    def write(self, path: Path, meta: Mapping[str, Any], owner: str) -> None:
        """Mirror a run.json written by the run's owner; raises LeaseLost when `owner` no longer holds it, so a
        worker that lost its run stops before it writes anything else."""
        row = row_of_meta(path, meta)
        sets = ", ".join(f"{c} = %({c})s" for c in _COLUMNS[1:])
        with self.pool.connection() as conn:
            cur = conn.execute(f"UPDATE m3lab_runs SET {sets} WHERE id = %(id)s AND owner = %(owner)s",
                               {**row, "owner": owner})
            if cur.rowcount != 1:
                raise LeaseLost(f"run {row['id']}: lease lost by {owner}")

    def get(self, run_id: str) -> dict[str, Any] | None:
        with self.pool.connection() as conn:
            return conn.execute(f"SELECT *, status AS raw_status, {_STATUS} FROM m3lab_runs WHERE id = %s",
                                (run_id,)).fetchone()

    def rows(self, runs_dir: Path | None = None, limit: int | None = None,
             statuses: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Runs (of one runs_dir, when given) newest first — by creation time, then id, as the viewer's folder scan
        orders them (two runs created in the same second have ids in no time order) — with the effective status."""
        clauses: list[str] = []
        args: list[object] = []
        if runs_dir is not None:
            prefix = str(runs_dir.absolute()).rstrip("/") + "/"
            clauses.append("path LIKE %s")
            args.append(prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        if statuses:
            clauses.append("status = ANY(%s)")
            args.append(list(statuses))
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        sql = (f"SELECT id, kind, title, path, {_STATUS}, stop_reason, iteration, tokens, elapsed_s, best_score, "
               f"best_iteration, created_at, updated_at, budget, owner, lease_until FROM m3lab_runs {where} "
               "ORDER BY created_at DESC NULLS LAST, id DESC" + (f" LIMIT {int(limit)}" if limit else ""))
        with self.pool.connection() as conn:
            return conn.execute(sql, args).fetchall()

    def counts(self) -> dict[str, int]:
        """Runs per effective status."""
        with self.pool.connection() as conn:
            found = conn.execute(f"SELECT s.status, count(*) AS n FROM (SELECT {_STATUS} FROM m3lab_runs) s "
                                 "GROUP BY s.status").fetchall()
        return {r["status"]: int(r["n"]) for r in found}


def list_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """An index row in the shape `m3lab runs list` prints (the same keys as the folder scan)."""
    return {"id": row["id"], "kind": row["kind"], "status": row["status"], "stop_reason": row["stop_reason"],
            "iterations": row["iteration"], "best_score": row["best_score"],
            "best_iteration": row["best_iteration"], "tokens": row["tokens"], "elapsed_s": row["elapsed_s"],
            "title": row["title"], "created_at": row["created_at"], "updated_at": row["updated_at"]}


def sync_folder(index: RunIndex, runs_dir: Path) -> int:
    """Import every run folder's run.json into the index (runs made before the store was configured, or a
    repaired index). Rows of runs that an owner drives are left to their owner. Returns the runs imported."""
    import json

    count = 0
    if not runs_dir.exists():
        return 0
    for child in sorted(runs_dir.iterdir()):
        meta_path = child / "run.json"
        if not meta_path.is_file():
            continue
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # an unreadable run stays visible through the folder listing, never through a bad row
        existing = index.get(child.name)
        if existing and existing["owner"] and existing["status"] == "running":
            continue
        index.upsert(child.absolute(), meta)
        count += 1
    return count
