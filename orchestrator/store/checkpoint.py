"""The graph's checkpointer: a per-run SQLite file by default, LangGraph's PostgresSaver on the store's pool when
`[store] url` is set (any worker on any node resumes a run from the same checkpoints)."""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from orchestrator.store.settings import StoreSettings


def compact_saver(conn: sqlite3.Connection) -> Any:
    """SqliteSaver with integer channel versions: its default 60-byte version strings, repeated for every
    channel in every checkpoint, are most of a checkpoint's size (SQLite needs no sortable version keys)."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    class CompactSqliteSaver(SqliteSaver):
        # SqliteSaver is typed for its string versions; LangGraph's own base saver makes int ones, which it accepts.
        def get_next_version(self, current: Any, channel: Any) -> int:  # type: ignore[override]
            if current is None:
                return 1
            return int(str(current).split(".", 1)[0]) + 1

    return CompactSqliteSaver(conn)


@contextmanager
def open_checkpointer(run_path: Path, store: StoreSettings) -> Iterator[Any]:
    """The checkpointer of one run for the time it is driven here."""
    if store.enabled:
        from langgraph.checkpoint.postgres import PostgresSaver

        from orchestrator.store.db import pool

        yield PostgresSaver(pool(store.url, store.pool_size))  # the pool outlives the run: other runs reuse it
        return
    conn = sqlite3.connect(run_path / "checkpoints.sqlite", check_same_thread=False)
    # WAL keeps every committed checkpoint across kill -9; NORMAL skips an fsync per step (power loss only).
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    try:
        yield compact_saver(conn)
    finally:
        conn.close()
