"""Connections and migrations of the PostgreSQL store: one psycopg pool per URL and process, and the schema
applied once per process under an advisory lock (idempotent, so every worker may run it at start)."""
from __future__ import annotations

import threading
from typing import Any

MIGRATIONS: tuple[str, ...] = (
    # 1: the run index, one row per run, kept in step with run.json (orchestrator/store/index.py)
    """
    CREATE TABLE IF NOT EXISTS m3lab_runs (
        id             text PRIMARY KEY,
        kind           text NOT NULL,
        title          text NOT NULL DEFAULT '',
        path           text NOT NULL,
        status         text NOT NULL,
        stop_reason    text NOT NULL DEFAULT '',
        owner          text,
        lease_until    timestamptz,
        heartbeat_at   timestamptz,
        iteration      integer NOT NULL DEFAULT 0,
        tokens         bigint NOT NULL DEFAULT 0,
        elapsed_s      double precision NOT NULL DEFAULT 0,
        best_score     double precision NOT NULL DEFAULT 0,
        best_iteration integer NOT NULL DEFAULT 0,
        created_at     double precision,
        updated_at     double precision
    );
    CREATE INDEX IF NOT EXISTS m3lab_runs_status ON m3lab_runs (status);
    """,
    # 2: `runs list` shows the runs of one runs_dir (one database may serve several labs / checkouts)
    "CREATE INDEX IF NOT EXISTS m3lab_runs_path ON m3lab_runs (path text_pattern_ops);",
    # 3: run.json's budget (limits and use): the viewer's run list draws its gauges from the index
    "ALTER TABLE m3lab_runs ADD COLUMN IF NOT EXISTS budget jsonb NOT NULL DEFAULT '{}'::jsonb;",
)
_LOCK_KEY = 0x6D336C6162  # "m3lab": one advisory lock serialises concurrent migrations

_pools: dict[tuple[str, str], Any] = {}  # (purpose, url) -> pool
_migrated: set[str] = set()
_guard = threading.Lock()


class StoreUnavailable(RuntimeError):
    """The PostgreSQL store did not answer or refused the connection."""


def pool(url: str, size: int = 4) -> Any:
    """The process's connection pool for `url` (opened and migrated on first use). LangGraph's PostgresSaver
    needs autocommit connections with dict rows and no server-side prepared statements."""
    with _guard:
        found = _pools.get(("state", url))
        if found is None:
            found = _pools[("state", url)] = _open_pool(url, size)
        if url not in _migrated:
            migrate(found)
            _migrated.add(url)
        return found


def lock_pool(url: str, size: int, purpose: str = "slots") -> Any:
    """The process's pool of connections that hold session advisory locks (slots.py) for a long time, apart from
    the state pool so that they never starve checkpoints or heartbeats. Every connection returned to it drops
    its locks; the server drops them when the connection dies, and TCP keepalives (server side, a session
    setting) tell it within about a minute that a lost node's connection died."""
    with _guard:
        found = _pools.get((purpose, url))
        if found is None:
            from psycopg_pool import ConnectionPool

            keepalive = "-c tcp_keepalives_idle=15 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=6"
            found = _pools[(purpose, url)] = _open_pool(
                url, size, name=f"m3lab-{purpose}", options=keepalive, check=ConnectionPool.check_connection,
                reset=lambda conn: conn.execute("SELECT pg_advisory_unlock_all()"))
        return found


def _open_pool(url: str, size: int, name: str = "m3lab", options: str | None = None, **pool_args: Any) -> Any:
    import psycopg
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool

    kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": None, "row_factory": dict_row}
    if options:
        kwargs["options"] = options
    p = ConnectionPool(url, min_size=1, max_size=max(2, size), kwargs=kwargs, open=False, name=name, **pool_args)
    try:
        p.open(wait=True, timeout=15)
    except (psycopg.Error, Exception) as exc:  # PoolTimeout carries the connection error in its message
        p.close()
        raise StoreUnavailable(f"cannot connect to the store at {redact(url)}: {exc}") from exc
    return p


def migrate(p: Any) -> None:
    """Apply every migration not yet recorded, then LangGraph's own checkpoint migrations, under one lock."""
    from langgraph.checkpoint.postgres import PostgresSaver

    with p.connection() as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS m3lab_migrations (version integer PRIMARY KEY, "
                         "applied_at timestamptz NOT NULL DEFAULT now())")
            done = {r["version"] for r in conn.execute("SELECT version FROM m3lab_migrations").fetchall()}
            for version, sql in enumerate(MIGRATIONS, start=1):
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(sql)
                    conn.execute("INSERT INTO m3lab_migrations (version) VALUES (%s)", (version,))
            PostgresSaver(conn).setup()  # on the locked connection: no second one from the pool
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        host = parts.netloc.rsplit("@", 1)[-1]
        parts = parts._replace(netloc=f"{parts.username}:***@{host}")
    return urlunsplit(parts)


def close_all() -> None:
    """Close every pool of this process (tests; a process that ends closes them anyway)."""
    with _guard:
        for p in _pools.values():
            p.close()
        _pools.clear()
        _migrated.clear()
