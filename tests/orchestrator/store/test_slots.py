"""Cluster-wide request slots of an endpoint on a real PostgreSQL server: separate processes share the limit, and a
holder killed with kill -9 frees its slot (the server drops a dead session's advisory locks)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from orchestrator.cluster import endpoint_slots
from orchestrator.config import Settings
from orchestrator.store import StoreSettings
from orchestrator.store.slots import ClusterSlot, evaluations_in_flight, marked_in_flight, request_slot, slots_in_use
from serving.client import ModelEndpoint

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[3]
URL = "http://10.9.9.9:8000/v1"  # never called: only its slots are taken
HOLD = ("import sys, time\nfrom orchestrator.store.slots import ClusterSlot\n"
        "with ClusterSlot(sys.argv[1], sys.argv[2], int(sys.argv[3])) as slot:\n"
        "    print('held', slot, flush=True)\n    time.sleep(600)\n")


def hold_in_process(pg_url: str, limit: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, pg_url, URL, str(limit)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = proc.stdout.readline()
    assert line.startswith("held"), line
    return proc


class Waiter(threading.Thread):
    """A thread of this process that waits for a slot, holds it until `done`, then lets go."""

    def __init__(self, pg_url: str, limit: int):
        super().__init__(daemon=True)
        self.args, self.got, self.done = (pg_url, URL, limit), threading.Event(), threading.Event()

    def run(self) -> None:
        with ClusterSlot(*self.args):
            self.got.set()
            self.done.wait(60)


def test_slots_are_shared_by_processes_and_freed_by_kill9(pg_url: str) -> None:
    store = StoreSettings(url=pg_url)
    holders = [hold_in_process(pg_url, 2) for _ in range(2)]
    waiter = Waiter(pg_url, 2)
    try:
        assert slots_in_use(store, URL) == 2
        assert endpoint_slots(Settings(producer=ModelEndpoint(base_url=URL, max_concurrency=2), store=store)) == \
            {URL: {"in_use": 2, "limit": 2}}  # what `m3lab cluster status` shows
        waiter.start()
        assert not waiter.got.wait(2.0)  # both slots are held by the other processes
        os.kill(holders[0].pid, signal.SIGKILL)
        holders[0].wait()
        assert waiter.got.wait(20.0)  # the dead holder's slot went to the waiter
        assert slots_in_use(store, URL) == 2
    finally:
        waiter.done.set()
        for proc in holders:
            proc.kill()
            proc.wait()
    waiter.join(10)
    # A killed client's backend lets go of its locks when it notices the closed socket: soon, not at once.
    deadline = time.monotonic() + 15
    while slots_in_use(store, URL) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert slots_in_use(store, URL) == 0


def test_without_a_store_or_a_limit_the_slot_is_this_process(pg_url: str) -> None:
    limited = ModelEndpoint(base_url=URL, max_concurrency=3)
    assert isinstance(request_slot(limited, StoreSettings(url=pg_url)), ClusterSlot)
    assert not isinstance(request_slot(limited, StoreSettings()), ClusterSlot)
    assert not isinstance(request_slot(ModelEndpoint(base_url=URL), StoreSettings(url=pg_url)), ClusterSlot)


def test_evaluations_in_flight_are_counted_while_they_run(pg_url: str) -> None:
    store = StoreSettings(url=pg_url)
    assert evaluations_in_flight(store) == 0
    with marked_in_flight(store), marked_in_flight(store):
        assert evaluations_in_flight(store) == 2
        assert slots_in_use(store, URL) == 0  # another family of locks
    assert evaluations_in_flight(store) == 0
