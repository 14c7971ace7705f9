"""Request slots of a shared model endpoint, counted across every process that uses the store (all the workers of
a cluster, and local runs next to them): slot i of an endpoint is the PostgreSQL session advisory lock
(endpoint key, i), and a request holds one for as long as it is in flight.

Why advisory locks rather than a counter row or a Ray actor: a holder that dies (kill -9, node lost) can never
leak its slot, because PostgreSQL drops a session's locks when its connection ends (db.lock_pool sets server-side
TCP keepalives, so a lost node's connection ends within about a minute), and no extra service has to stay alive.
Waiters poll (try-lock every slot, then back off up to `_MAX_POLL_S`): no FIFO fairness between processes."""
from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from orchestrator.store.db import StoreUnavailable, lock_pool
from orchestrator.store.settings import StoreSettings
from serving.client import ModelEndpoint, endpoint_slot

_MAX_POLL_S = 0.5
_POOL_CHECK_S = 60.0  # how often a wait for a connection of the lock pool checks that the store still answers
_WAIT_FOR_CONNECTION_S = 24 * 3600.0


EVALUATIONS = "m3lab:evaluations"
"""What kernel candidate evaluations in flight are counted under (`marked_in_flight`)."""


def lock_key(name: str) -> int:
    """The first advisory-lock key of a family of locks (an endpoint's URL, EVALUATIONS): a signed 32-bit hash."""
    digest = hashlib.blake2b(name.rstrip("/").encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


class ClusterSlot:
    """One request's hold on one of `limit` cluster-wide slots of an endpoint. Entered once per attempt (the
    retry loop enters it again after a back-off); one thread at a time."""

    def __init__(self, store_url: str, base_url: str, limit: int):
        self.pool = lock_pool(store_url, limit)  # never more connections than slots this process can hold
        self.key, self.limit = lock_key(base_url), limit
        self._held: tuple[Any, int] | None = None

    def __enter__(self) -> int:
        conn = self._connection()
        try:
            slot = self._take(conn)
        except BaseException:
            self.pool.putconn(conn)  # its reset drops any lock it took
            raise
        self._held = (conn, slot)
        return slot

    def _connection(self) -> Any:
        """A connection of the lock pool: wait while this process's own slots are all in flight (as long as its
        requests take), fail when the pool has no connection at all (the store is down)."""
        from psycopg_pool import PoolTimeout

        while True:
            try:
                return self.pool.getconn(timeout=_POOL_CHECK_S)
            except PoolTimeout as exc:
                if self.pool.get_stats().get("pool_size", 0) == 0:
                    raise StoreUnavailable(f"endpoint slots: no connection to the store ({exc})") from exc

    def _take(self, conn: Any) -> int:
        delay = 0.02
        while True:
            for slot in range(self.limit):
                if conn.execute("SELECT pg_try_advisory_lock(%s, %s) AS ok", (self.key, slot)).fetchone()["ok"]:
                    return slot
            time.sleep(delay)
            delay = min(delay * 2, _MAX_POLL_S)

    def __exit__(self, *exc: object) -> None:
        import psycopg

        conn, slot = self._held or (None, -1)
        self._held = None
        if conn is None:
            return
        try:
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", (self.key, slot))
        except psycopg.Error as err:  # the connection died, and its lock with it: the request's answer stands
            logging.getLogger(__name__).warning("endpoint slot %s: unlock failed: %s", slot, err)
        finally:
            self.pool.putconn(conn)


def request_slot(endpoint: ModelEndpoint, store: StoreSettings) -> AbstractContextManager[Any]:
    """What one model request holds: a cluster-wide slot when a PostgreSQL store is configured (the limit is the
    endpoint's, whoever calls it), else one of this process's `max_concurrency` slots."""
    if endpoint.max_concurrency <= 0 or not store.enabled:
        return endpoint_slot(endpoint)
    return ClusterSlot(store.url, endpoint.base_url, endpoint.max_concurrency)


@contextmanager
def marked_in_flight(store: StoreSettings, what: str = EVALUATIONS, at_once: int = 4) -> Iterator[None]:
    """Count one piece of work as in flight, cluster-wide, while the block runs (`m3lab cluster status`): a lock
    (key of `what`, a random second key) that ends with the block or with its holder, however that dies.
    `at_once`: how many this process may mark at the same time (one connection each, from a pool of that size),
    e.g. the islands of a search whose evaluations are in flight together."""
    key, size = lock_key(what), max(4, at_once)
    with lock_pool(store.url, size, purpose=f"marks-{size}").connection(timeout=_WAIT_FOR_CONNECTION_S) as conn:
        mark = secrets.randbits(31)
        while not conn.execute("SELECT pg_try_advisory_lock(%s, %s) AS ok", (key, mark)).fetchone()["ok"]:
            mark = secrets.randbits(31)  # that second key is taken (a 1 in 2^31 chance): draw another
        try:
            yield
        finally:  # (the pool's reset would drop it too, but in the background, a moment later)
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", (key, mark))


def slots_in_use(store: StoreSettings, base_url: str) -> int:
    """How many of the endpoint's request slots are held now, by anyone."""
    return locks_held(store, lock_key(base_url))


def evaluations_in_flight(store: StoreSettings) -> int:
    """Kernel candidate evaluations running now anywhere on the cluster (each driver marks its own)."""
    return locks_held(store, lock_key(EVALUATIONS))


def locks_held(store: StoreSettings, key: int) -> int:
    """Granted two-key advisory locks with first key `key` in the store's database."""
    from orchestrator.store.db import pool

    with pool(store.url, store.pool_size).connection() as conn:
        return int(conn.execute("SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND granted "
                                "AND classid = %s::oid AND objsubid = 2 "
                                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                                (key & 0xFFFFFFFF,)).fetchone()["n"])
