"""Warm pool: containers started ahead of time, one spec at a time, so `open_sandbox(pool=True)` returns at once.

Only callers that open the same spec again and again ask for the pool (benchmarks, a service handing out
sandboxes on one workspace): a one-off sandbox (an iteration's check, a kernel evaluation, a reproduction) is
opened with `pool=False` and never refills it, since its workspace is a per-iteration folder that no later
sandbox shares. A pooled container is never reused: each is handed out once and a replacement is started in a
background thread. Containers are keyed by their full spec, since the workspace bind mount and the limits are
fixed when a container starts; whatever the keys, the pool holds at most `cap` idle containers (the oldest of
another key makes room). Idle containers older than `MAX_IDLE_S` are dropped; everything left is removed at
interpreter exit, and the reaper catches what a crash leaves.
"""
from __future__ import annotations

import atexit
import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections import defaultdict
from typing import TYPE_CHECKING

from sandboxes.base import SandboxError, SandboxSpec
from sandboxes.docker_backend import DockerSandbox, start_container

if TYPE_CHECKING:
    import docker

log = logging.getLogger(__name__)
MAX_IDLE_S = 600.0
"""An idle container older than this is discarded rather than handed out (its lifetime clock is running)."""
POOL_CAP = 2
"""Idle (ready or starting) containers one process keeps at most, over all spec keys."""


def spec_key(spec: SandboxSpec) -> str:
    """A stable key of everything that is fixed when a container starts."""
    data = json.dumps(dataclasses.asdict(spec), default=str, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


class WarmPool:
    """Ready containers per spec key, at most `cap` idle in all; thread-safe."""

    def __init__(self, client: docker.DockerClient, size: int = 1, cap: int = POOL_CAP) -> None:
        self.client = client
        self.size = min(size, cap)
        self.cap = cap
        self._ready: dict[str, list[DockerSandbox]] = defaultdict(list)
        self._filling: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def acquire(self, spec: SandboxSpec) -> DockerSandbox | None:
        """A pre-started sandbox for `spec`, or None (the caller starts one cold)."""
        key = spec_key(spec)
        while True:
            with self._lock:
                if not self._ready[key]:
                    return None
                sandbox = self._ready[key].pop(0)
            if time.monotonic() - sandbox.started < min(MAX_IDLE_S, spec.lifetime_s / 2):
                return sandbox
            sandbox.close()

    def refill_async(self, spec: SandboxSpec) -> None:
        """Start containers in the background until `size` are ready for this spec, evicting the oldest idle
        containers of other specs when the pool is at its cap."""
        key = spec_key(spec)
        with self._lock:
            missing = self.size - len(self._ready[key]) - self._filling[key]
            if missing <= 0:
                return
            evicted = self._make_room(key, missing)
            missing = min(missing, self.cap - self.idle_count())
            self._filling[key] += max(missing, 0)
        for sandbox in evicted:
            sandbox.close()
        for _ in range(missing):
            t = threading.Thread(target=self._fill_one, args=(spec, key), daemon=True, name="m3lab-pool")
            t.start()
            self._threads.append(t)

    def idle_count(self) -> int:
        """Containers ready or starting, over all keys (call with the lock held)."""
        return sum(len(v) for v in self._ready.values()) + sum(self._filling.values())

    def _make_room(self, key: str, wanted: int) -> list[DockerSandbox]:
        """Take the oldest idle containers of other keys out until `wanted` more fit under the cap (lock held);
        the caller closes them outside the lock."""
        others = sorted((sb for k, lst in self._ready.items() if k != key for sb in lst), key=lambda sb: sb.started)
        excess = self.idle_count() + wanted - self.cap
        evicted = others[:max(excess, 0)]
        for sb in evicted:
            for lst in self._ready.values():
                if sb in lst:
                    lst.remove(sb)
        for k in [k for k in {*self._ready, *self._filling} if not self._ready.get(k) and not self._filling.get(k)]:
            self._ready.pop(k, None)  # keys of specs opened once must not pile up either
            self._filling.pop(k, None)
        return evicted

    def _fill_one(self, spec: SandboxSpec, key: str) -> None:
        sandbox = None
        try:
            sandbox = DockerSandbox(spec, start_container(self.client, spec, pool_key=key), self.client)
            sandbox.start_agent()
        except SandboxError as exc:
            log.warning("warm pool could not start a container: %s", exc)
        with self._lock:
            self._filling[key] -= 1
            if sandbox is not None:
                self._ready[key].append(sandbox)

    def prewarm(self, spec: SandboxSpec) -> None:
        """Fill the pool for `spec` and wait until it is ready (benchmarks, run start)."""
        self.refill_async(spec)
        self.wait()

    def wait(self) -> None:
        """Wait for background starts to finish."""
        for t in list(self._threads):
            t.join()
        self._threads = [t for t in self._threads if t.is_alive()]

    def drain(self) -> int:
        """Remove every idle container; returns how many."""
        self.wait()
        with self._lock:
            items = [sb for lst in self._ready.values() for sb in lst]
            self._ready.clear()
        for sandbox in items:
            sandbox.close()
        return len(items)


_POOL: WarmPool | None = None
_POOL_LOCK = threading.Lock()


def shared_pool(client: docker.DockerClient) -> WarmPool:
    """The process's pool (created on first use; drained at exit)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = WarmPool(client)
            atexit.register(_POOL.drain)
        return _POOL


def drain_shared_pool() -> int:
    """Remove the idle containers of this process's pool (tests, `m3lab sandbox reap`)."""
    return _POOL.drain() if _POOL is not None else 0
