"""Runs and kernel evaluations on a Ray cluster (`[cluster] address`), run state in the PostgreSQL store.

- `submit_run` creates the run folder in the shared runs_dir, marks it `queued` and hands it to the scheduler: a
  detached actor (it outlives the CLI that submitted) that starts one Ray task per run. Ray restarts a task whose
  worker process or node died (`max_retries`); the restarted task waits for the dead owner's lease to run out and
  resumes the run from its PostgreSQL checkpoint. Leases, not Ray, guarantee that one worker drives a run.
  Runs that nothing carries any more (Ray's retries spent, or the scheduler died and took its tasks along) are
  resubmitted by the scheduler itself every `reconcile_s` (`m3lab cluster reconcile` does it at once).
- A run's task asks for `run_cpus` logical CPUs and no GPU (it mostly waits on the model endpoint); its kernel
  candidate evaluations become Ray tasks of their own with `num_gpus=eval_gpus` (CUDA targets) or
  `num_cpus=eval_cpus` (CPU targets). The run's driver stays the only writer of its program database.

Ray is imported here, so only commands that use the cluster import this module."""
from __future__ import annotations

import hashlib
import importlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import ray

from orchestrator import events
from orchestrator.config import Settings
from orchestrator.rundir import RunDir
from orchestrator.store import ACTIVE, ClusterSettings, LeaseHeld, LeaseLost, RunIndex, StoreSettings, claim
from orchestrator.store.slots import evaluations_in_flight, marked_in_flight

ENDPOINT_MODELS = "orchestrator.runtime:endpoint_models"


class ClusterError(RuntimeError):
    """No cluster answers at the configured address, or the configuration cannot drive runs on one."""


def connect(cluster: ClusterSettings) -> None:
    """Join the cluster as a driver (once per process)."""
    if ray.is_initialized():
        return
    try:
        ray.init(address=cluster.address, namespace=cluster.namespace, log_to_driver=False,
                 logging_level=logging.ERROR, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"no Ray cluster at {cluster.address!r}: {exc}. Start one with `ray start --head` "
                           "or set cluster.address in m3lab.toml") from exc


def resolve(ref: str | None) -> Any:
    """A 'module:attribute' reference (model factories and sandbox openers travel to workers by name)."""
    if not ref:
        return None
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def drive_here(run_path: str, settings: Settings, models: str = ENDPOINT_MODELS, opener: str | None = None,
               poll_s: float = 1.0) -> str:
    """Drive a submitted run in this worker: wait while a live owner holds its lease, take it while it is still
    queued or running (a dead owner's run), drive it to its end. Returns the run's status afterwards, or
    `skipped: ...` when another worker finished it first."""
    from orchestrator.runner import RunInterrupted, drive, load_runtime
    from serving.client import EndpointUnavailable

    run_id = Path(run_path).name
    index = RunIndex(settings.store)
    while True:
        row = index.get(run_id)
        if row is None or row["raw_status"] not in ACTIVE:
            return f"skipped: {row['raw_status'] if row else 'not in the index'}"
        rt = load_runtime(Path(run_path), settings, resolve(models), resolve(opener))
        try:
            lease = claim(rt.run, settings.store, statuses=ACTIVE)
        except LeaseHeld:
            rt.close()
            time.sleep(poll_s)
            continue
        if lease is None:  # RunIndex above already needed the store; say so rather than fail on None below
            rt.close()
            raise ClusterError("cluster runs need the run store (PostgreSQL): set [store] in m3lab.toml")
        if settings.cluster.evaluations != "local":
            rt.offload = Offloader(settings.cluster, settings.store, settings.search.islands)
        rt.run.events.add(events.lease_acquired(rt.run.read_meta().get("iteration"), lease.owner))
        try:
            drive(rt, resume=row["raw_status"] == "running", lease=lease)
        except (RunInterrupted, EndpointUnavailable):
            pass  # drive recorded the pause; a `runs resume --cluster` continues it
        except LeaseLost:
            return "lost: another worker took the run over"
        except Exception:  # noqa: BLE001 - drive recorded the failure in the run; Ray must not retry it
            pass
        return str(RunDir(Path(run_path)).read_meta().get("status"))


@ray.remote
def _drive_task(run_path: str, settings: Settings, models: str, opener: str | None) -> str:
    return drive_here(run_path, settings, models, opener)


@ray.remote
def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


class Offloader:
    """Runs a function as a Ray task sized for one evaluation: `num_gpus` for CUDA work, `num_cpus` otherwise.
    The result comes back to the caller, which stays the only writer of its run's files. With a store, each
    evaluation is marked in flight there for as long as it runs (`m3lab cluster status` counts them). It may be
    called from several threads at once (the islands of a search: `at_once` evaluations in flight)."""

    def __init__(self, cluster: ClusterSettings, store: StoreSettings | None = None, at_once: int = 1):
        self.cluster, self.store, self.at_once = cluster, store, at_once
        self.submitted = 0
        self._count = threading.Lock()

    def __call__(self, fn: Callable[..., Any], *args: Any, gpu: bool = False, **kwargs: Any) -> Any:
        with self._count:
            self.submitted += 1
        size = {"num_gpus": self.cluster.eval_gpus, "num_cpus": 0} if gpu else {"num_cpus": self.cluster.eval_cpus}
        task = _call.options(name=f"m3lab-eval:{getattr(fn, '__name__', 'fn')}", max_retries=2, **size)
        store = self.store
        marked = marked_in_flight(store, at_once=self.at_once) if store is not None and store.enabled else nullcontext()
        with marked:
            return ray.get(task.remote(fn, *args, **kwargs))


@ray.remote(num_cpus=0, max_restarts=-1)
class Scheduler:
    """Owns the runs' Ray tasks so that they outlive the CLI that submitted them, and every `reconcile_s`
    resubmits the runs of its runs_dir that no task carries and no live lease holds. One per runs_dir and store
    (`scheduler_name`); Ray restarts it with the arguments it was created with, so a restarted scheduler, whose
    tasks died with it, finds its runs again on its first round."""

    def __init__(self, settings: Settings, models: str = ENDPOINT_MODELS, opener: str | None = None) -> None:
        self.inflight: dict[str, Any] = {}
        self.resubmits: Counter[str] = Counter()
        self.watched = (settings, models, opener)  # the latest submitter's settings (endpoints, store)
        self.lock = threading.RLock()  # actor calls and the reconcile thread share the state
        if settings.cluster.reconcile_s > 0:
            threading.Thread(target=self._reconcile_every, name="m3lab-reconcile", daemon=True).start()

    def submit(self, run_path: str, settings: Settings, models: str, opener: str | None) -> str:
        run_id = Path(run_path).name
        task = _drive_task.options(name=f"m3lab-run:{run_id}", num_cpus=settings.cluster.run_cpus,
                                   max_retries=settings.cluster.max_retries)
        with self.lock:
            self.watched = (settings, models, opener)
            self.inflight[run_id] = task.remote(run_path, settings, models, opener)
        return run_id

    def inflight_runs(self) -> list[str]:
        """Runs whose task has not ended (queued in Ray, waiting for a lease, or driving)."""
        with self.lock:
            refs = list(self.inflight.values())
            if refs:
                done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
                finished = set(done)
                self.inflight = {k: v for k, v in self.inflight.items() if v not in finished}
            return sorted(self.inflight)

    def reconcile(self, watched: tuple[Settings, str, str | None] | None = None, grace_s: float = 0.0,
                  max_resubmits: int | None = None) -> list[str]:
        """Resubmit this runs_dir's orphans (see `orphan_rows`) with `watched` (settings, models, opener; by
        default the latest submitter's); a run resubmitted `max_resubmits` times already is left alone (it fails
        for a reason a restart does not cure). Returns the run ids."""
        with self.lock:
            self.watched = watched or self.watched
            settings, models, opener = self.watched
            inflight = set(self.inflight_runs())
            resubmitted = []
            for row in orphan_rows(settings, inflight, grace_s):
                if max_resubmits is not None and self.resubmits[row["id"]] >= max_resubmits:
                    continue
                self.resubmits[row["id"]] += 1
                self.submit(row["path"], settings, models, opener)
                resubmitted.append(row["id"])
            return resubmitted

    def _reconcile_every(self) -> None:
        """The automatic round: runs that were just queued get `lease_s` of grace (their submission may be on
        its way here)."""
        log = logging.getLogger("m3lab.scheduler")
        while True:
            settings = self.watched[0]
            time.sleep(settings.cluster.reconcile_s)
            try:
                ids = self.reconcile(grace_s=settings.store.lease_s, max_resubmits=settings.cluster.max_retries)
            except Exception as exc:  # noqa: BLE001 - a store or cluster hiccup: the next round tries again
                log.warning("reconcile failed: %s", exc)
                continue
            if ids:
                log.warning("resubmitted runs nothing carried: %s", ", ".join(ids))


def orphan_rows(settings: Settings, inflight: set[str], grace_s: float = 0.0) -> list[dict[str, Any]]:
    """Runs of runs_dir that the index says are queued or running while no task in `inflight` carries them and
    no live lease holds them (their owner died: process, node, or the scheduler with its tasks), left alone for
    `grace_s` after their last run.json write."""
    now = time.time()
    return [r for r in RunIndex(settings.store).rows(settings.runs_dir, statuses=ACTIVE)
            if r["id"] not in inflight and r["status"] != "running"  # effective status: the lease ran out
            and (r["updated_at"] or 0) <= now - grace_s]


def scheduler_name(settings: Settings) -> str:
    """One scheduler per (store, runs_dir): its creation arguments are what it reconciles after a restart."""
    key = f"{settings.store.url}\n{Path(settings.runs_dir).absolute()}"
    return f"m3lab-scheduler-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def scheduler(settings: Settings, models: str = ENDPOINT_MODELS, opener: str | None = None) -> Any:
    """The scheduler actor of this runs_dir and store (created on first use; detached, restarted by Ray if it
    dies)."""
    connect(settings.cluster)
    actor_class: Any = Scheduler  # @ray.remote made it an ActorClass; ray's typing keeps the plain class
    return actor_class.options(name=scheduler_name(settings), namespace=settings.cluster.namespace,
                               lifetime="detached", get_if_exists=True).remote(settings, models, opener)


def _require_store(settings: Settings) -> None:
    if not settings.store.enabled:
        raise ClusterError("--cluster needs a shared run store: set store.url = \"postgresql://...\" in m3lab.toml "
                           "(or M3LAB_STORE_URL) and a runs_dir on a mount every node sees")


def submit_run(task: Any, settings: Settings, models: str = ENDPOINT_MODELS, opener: str | None = None) -> RunDir:
    """Create the run here (shared runs_dir), queue it and return at once; a cluster worker drives it."""
    from orchestrator.runner import create_run

    _require_store(settings)
    sched = scheduler(settings, models, opener)  # fail before creating a run folder when no cluster answers
    run = create_run(task, settings)
    run.update_meta(status="queued")
    run.events.add(events.status(0, "queued", f"submitted to the cluster at {settings.cluster.address}"))
    ray.get(sched.submit.remote(str(run.path), settings, models, opener))
    return run


def submit_resume(run: RunDir, settings: Settings, models: str = ENDPOINT_MODELS, opener: str | None = None) -> None:
    """Queue a paused, stopped or failed run for the cluster (a run with a live owner is refused)."""
    from orchestrator.control import clear_stop
    from orchestrator.store import mirror

    _require_store(settings)
    sched = scheduler(settings, models, opener)
    row = RunIndex(settings.store).get(run.id)
    status = row["status"] if row else run.read_meta().get("status")
    if status in ("running", "succeeded"):
        raise ClusterError(f"run {run.id} is {status}: nothing to resume")
    clear_stop(run.path)
    mirror(run, settings.store)
    run.update_meta(status="queued")
    ray.get(sched.submit.remote(str(run.path), settings, models, opener))


def reconcile(settings: Settings, models: str = ENDPOINT_MODELS, opener: str | None = None) -> list[str]:
    """Resubmit now, without grace, the runs of runs_dir that nothing carries (see `orphan_rows`); the scheduler
    also does this by itself every `reconcile_s`. Returns the run ids resubmitted."""
    _require_store(settings)
    return ray.get(scheduler(settings, models, opener).reconcile.remote((settings, models, opener)))


def cluster_status(settings: Settings) -> dict[str, Any]:
    """Nodes, resources in use (evaluations hold GPUs / eval CPUs, runs hold run CPUs), runs per status."""
    connect(settings.cluster)
    nodes = [{"node": n["NodeManagerAddress"], "alive": n["Alive"], "cpus": n["Resources"].get("CPU", 0),
              "gpus": n["Resources"].get("GPU", 0), "head": "node:__internal_head__" in n["Resources"]}
             for n in ray.nodes()]
    total, free = ray.cluster_resources(), ray.available_resources()
    resources = {k: {"total": total.get(k, 0), "in_use": round(total.get(k, 0) - free.get(k, 0), 3)}
                 for k in ("CPU", "GPU")}
    inflight = ray.get(scheduler(settings).inflight_runs.remote()) if settings.store.enabled else []
    runs = RunIndex(settings.store).counts() if settings.store.enabled else {}
    return {"address": settings.cluster.address, "nodes": nodes, "resources": resources,
            "runs": runs, "queue": runs.get("queued", 0), "inflight_runs": inflight,
            "evaluations_in_flight": evaluations_in_flight(settings.store) if settings.store.enabled else None,
            "endpoint_slots": endpoint_slots(settings)}


def endpoint_slots(settings: Settings) -> dict[str, dict[str, int]]:
    """Requests in flight now / the cluster-wide limit, per model endpoint that has one."""
    from orchestrator.store.slots import slots_in_use

    limits = {e.base_url: e.max_concurrency for e in (settings.producer, settings.verifier) if e.max_concurrency > 0}
    if not settings.store.enabled:
        return {}
    return {url: {"in_use": slots_in_use(settings.store, url), "limit": limit} for url, limit in limits.items()}
