"""One owner per run: a lease row (owner, lease_until) in the run index, renewed by a heartbeat thread.

Taking a lease is one conditional UPDATE, so two workers racing for a run cannot both win. A worker whose
process dies stops renewing; once `lease_until` has passed, another worker may take the run and resume it from
its last checkpoint. Every run.json write of the owner is fenced (`RunIndex.write` checks the owner), so a worker
that stalled past its lease stops at its next write instead of writing beside the new owner."""
from __future__ import annotations

import os
import secrets
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from orchestrator.store.index import LeaseLost, RunIndex

__all__ = ["Lease", "LeaseHeld", "LeaseLost", "new_owner"]


class LeaseHeld(RuntimeError):
    """Another live worker owns the run."""


def new_owner() -> str:
    """host:pid:nonce, unique per claim (a restarted worker with a recycled pid is still another owner)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class Lease:
    """A held lease on one run; `release()` ends it (idempotent)."""

    index: RunIndex
    run_id: str
    owner: str
    lease_s: float
    lost: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @classmethod
    def acquire(cls, index: RunIndex, run_id: str, lease_s: float,
                statuses: tuple[str, ...] | None = None) -> Lease:
        """Take the run if nobody holds a live lease on it (and, when given, its status is one of `statuses`);
        raises LeaseHeld otherwise. Starts the heartbeat."""
        owner = new_owner()
        status_clause = "AND status = ANY(%(statuses)s)" if statuses else ""
        with index.pool.connection() as conn:
            row = conn.execute(
                "UPDATE m3lab_runs SET owner = %(owner)s, lease_until = now() + make_interval(secs => %(ttl)s), "
                "heartbeat_at = now() WHERE id = %(id)s AND (owner IS NULL OR lease_until IS NULL "
                f"OR lease_until < now()) {status_clause} RETURNING id",
                {"owner": owner, "ttl": lease_s, "id": run_id, "statuses": list(statuses or ())}).fetchone()
            if row is None:
                held = conn.execute("SELECT owner, status, lease_until FROM m3lab_runs WHERE id = %s",
                                    (run_id,)).fetchone()
        if row is None:
            if held is None:
                raise LeaseHeld(f"run {run_id} is not in the run index")
            raise LeaseHeld(f"run {run_id} is {held['status']}, owned by {held['owner'] or 'nobody'} "
                            f"until {held['lease_until']}")
        lease = cls(index, run_id, owner, lease_s)
        lease._thread = threading.Thread(target=lease._beat, name=f"lease-{run_id}", daemon=True)
        lease._thread.start()
        return lease

    def renew(self) -> bool:
        """Extend the lease; False when it was lost (expired and taken, or released)."""
        with self.index.pool.connection() as conn:
            cur = conn.execute(
                "UPDATE m3lab_runs SET lease_until = now() + make_interval(secs => %s), heartbeat_at = now() "
                "WHERE id = %s AND owner = %s", (self.lease_s, self.run_id, self.owner))
            return cur.rowcount == 1

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                if not self.renew():
                    self.lost.set()
                    return
            except Exception:  # noqa: BLE001 - a store hiccup: try again next beat; the lease still runs
                continue

    def write_meta(self, path: Any, meta: dict[str, Any]) -> None:
        """The fenced mirror of a run.json write (RunDir.on_meta)."""
        if self.lost.is_set():
            raise LeaseLost(f"run {self.run_id}: lease lost by {self.owner}")
        self.index.write(path, meta, self.owner)

    def release(self) -> None:
        """Stop the heartbeat and free the run for the next worker (only if we still own it). The row is freed
        before the heartbeat thread is joined: a renew still in flight matches no row once the owner is NULL, and
        a run that reads as ended is not left owned while a slow heartbeat finishes (up to the join's 5 s)."""
        self._stop.set()
        with self.index.pool.connection() as conn:
            conn.execute("UPDATE m3lab_runs SET owner = NULL, lease_until = NULL WHERE id = %s AND owner = %s",
                         (self.run_id, self.owner))
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
