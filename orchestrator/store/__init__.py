"""Run state beyond the run folder: which checkpointer the graph uses, the run index that `runs list/show`,
the viewer and the cluster scheduler read, and the leases that give each run one owner (README.md)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orchestrator.rundir import RunDir, effective_status
from orchestrator.store.checkpoint import compact_saver, open_checkpointer
from orchestrator.store.db import StoreUnavailable
from orchestrator.store.index import ACTIVE, LeaseLost, RunIndex, list_row, sync_folder
from orchestrator.store.leases import Lease, LeaseHeld
from orchestrator.store.settings import ClusterSettings, StoreSettings

__all__ = ["ACTIVE", "ClusterSettings", "Lease", "LeaseHeld", "LeaseLost", "RunIndex", "StoreSettings",
           "StoreUnavailable", "claim", "compact_saver", "index_rows", "list_row", "mirror", "open_checkpointer",
           "run_status", "sync_folder"]


def claim(run: RunDir, store: StoreSettings, statuses: tuple[str, ...] | None = None) -> Lease | None:
    """Take the run's lease (None without a store: one machine, pids tell who runs what) and fence every later
    run.json write of this RunDir with it. Raises LeaseHeld when another live worker owns the run."""
    if not store.enabled:
        return None
    index = RunIndex(store)
    if index.get(run.id) is None:
        index.upsert(run.path, run.read_meta())
    lease = Lease.acquire(index, run.id, store.lease_s, statuses)
    run.on_meta = lease.write_meta
    return lease


def release(run: RunDir, lease: Lease | None) -> None:
    """End the lease after the owner's last write; later writes of this RunDir are plain mirrors again."""
    if lease is None:
        return
    run.on_meta = None
    lease.release()


def mirror(run: RunDir, store: StoreSettings) -> None:
    """Mirror run.json writes of a RunDir that nobody drives here (creation, `runs stop` on a paused run)."""
    if store.enabled:
        index = RunIndex(store)
        run.on_meta = lambda path, meta: index.upsert(path, meta)


def run_status(run: RunDir, store: StoreSettings, meta: Mapping[str, Any] | None = None) -> str:
    """The effective status: from the lease when a store is configured (owners may live on other nodes),
    else from run.json and the local pid."""
    meta = meta if meta is not None else run.read_meta()
    if store.enabled:
        row = RunIndex(store).get(run.id)
        if row is not None:
            return str(row["status"])
    return effective_status(meta)


def index_rows(store: StoreSettings, runs_dir: Path) -> list[dict[str, Any]]:
    """`runs list` rows of runs_dir from the index (newest first)."""
    return [list_row(r) for r in RunIndex(store).rows(runs_dir)]
