"""Runs and kernel evaluations on a Ray cluster (`[cluster] address`), run state in the PostgreSQL store.

- `submit_run` creates the run folder in the shared runs_dir, marks it `queued` and hands it to the scheduler: a
  detached actor (it outlives the CLI that submitted) that starts one Ray task per run. Ray restarts a task whose
  worker process or node died (`max_retries`); the restarted task waits for the dead owner's lease to run out and
  resumes the run from its PostgreSQL checkpoint. Leases, not Ray, guarantee that one worker drives a run.
- A run's task asks for `run_cpus` logical CPUs and no GPU (it mostly waits on the model endpoint); its kernel
  candidate evaluations become Ray tasks of their own with `num_gpus=eval_gpus` (CUDA targets) or
  `num_cpus=eval_cpus` (CPU targets). The run's driver stays the only writer of its program database.

Ray is imported here, so only commands that use the cluster import this module."""
from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from orchestrator.config import Settings
from orchestrator.rundir import RunDir
from orchestrator.store import ACTIVE, ClusterSettings, LeaseHeld, LeaseLost, RunIndex, claim

SCHEDULER = "m3lab-scheduler"
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
            rt.offload = Offloader(settings.cluster)
        rt.run.events.append("lease_acquired", rt.run.read_meta().get("iteration"), owner=lease.owner)
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
    The result comes back to the caller, which stays the only writer of its run's files."""

    def __init__(self, cluster: ClusterSettings):
        self.cluster = cluster
        self.submitted = 0

    def __call__(self, fn: Callable[..., Any], *args: Any, gpu: bool = False, **kwargs: Any) -> Any:
        self.submitted += 1
        size = {"num_gpus": self.cluster.eval_gpus, "num_cpus": 0} if gpu else {"num_cpus": self.cluster.eval_cpus}
        task = _call.options(name=f"m3lab-eval:{getattr(fn, '__name__', 'fn')}", max_retries=2, **size)
        return ray.get(task.remote(fn, *args, **kwargs))


@ray.remote(num_cpus=0, max_restarts=-1)
class Scheduler:
    """Owns the runs' Ray tasks so that they outlive the CLI that submitted them."""

    def __init__(self) -> None:
        self.inflight: dict[str, Any] = {}

    def submit(self, run_path: str, settings: Settings, models: str, opener: str | None) -> str:
        run_id = Path(run_path).name
        task = _drive_task.options(name=f"m3lab-run:{run_id}", num_cpus=settings.cluster.run_cpus,
                                   max_retries=settings.cluster.max_retries)
        self.inflight[run_id] = task.remote(run_path, settings, models, opener)
        return run_id

    def inflight_runs(self) -> list[str]:
        """Runs whose task has not ended (queued in Ray, waiting for a lease, or driving)."""
        refs = list(self.inflight.values())
        if refs:
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            finished = set(done)
            self.inflight = {k: v for k, v in self.inflight.items() if v not in finished}
        return sorted(self.inflight)


def scheduler(cluster: ClusterSettings) -> Any:
    """The cluster's scheduler actor (created on first use; detached, restarted by Ray if it dies)."""
    connect(cluster)
    actor_class: Any = Scheduler  # @ray.remote made it an ActorClass; ray's typing keeps the plain class
    return actor_class.options(name=SCHEDULER, namespace=cluster.namespace, lifetime="detached",
                               get_if_exists=True).remote()


def _require_store(settings: Settings) -> None:
    if not settings.store.enabled:
        raise ClusterError("--cluster needs a shared run store: set store.url = \"postgresql://...\" in m3lab.toml "
                           "(or M3LAB_STORE_URL) and a runs_dir on a mount every node sees")


def submit_run(task: Any, settings: Settings, models: str = ENDPOINT_MODELS, opener: str | None = None) -> RunDir:
    """Create the run here (shared runs_dir), queue it and return at once; a cluster worker drives it."""
    from orchestrator.runner import create_run

    _require_store(settings)
    sched = scheduler(settings.cluster)  # fail before creating a run folder when no cluster answers
    run = create_run(task, settings)
    run.update_meta(status="queued")
    run.events.append("status", 0, status="queued", reason=f"submitted to the cluster at {settings.cluster.address}")
    ray.get(sched.submit.remote(str(run.path), settings, models, opener))
    return run


def submit_resume(run: RunDir, settings: Settings, models: str = ENDPOINT_MODELS, opener: str | None = None) -> None:
    """Queue a paused, stopped or failed run for the cluster (a run with a live owner is refused)."""
    from orchestrator.control import clear_stop
    from orchestrator.store import mirror

    _require_store(settings)
    sched = scheduler(settings.cluster)
    row = RunIndex(settings.store).get(run.id)
    status = row["status"] if row else run.read_meta().get("status")
    if status in ("running", "succeeded"):
        raise ClusterError(f"run {run.id} is {status}: nothing to resume")
    clear_stop(run.path)
    mirror(run, settings.store)
    run.update_meta(status="queued")
    ray.get(sched.submit.remote(str(run.path), settings, models, opener))


def reconcile(settings: Settings, models: str = ENDPOINT_MODELS, opener: str | None = None) -> list[str]:
    """Resubmit the runs of runs_dir that the index says are queued or running while no task of the scheduler
    carries them and no live lease holds them (their scheduler actor died, taking its tasks with it).
    Returns the run ids resubmitted."""
    _require_store(settings)
    sched = scheduler(settings.cluster)
    inflight = set(ray.get(sched.inflight_runs.remote()))
    orphans = [r for r in RunIndex(settings.store).rows(settings.runs_dir, statuses=ACTIVE)
               if r["id"] not in inflight and r["status"] != "running"]  # effective status: lease ran out
    for row in orphans:
        ray.get(sched.submit.remote(row["path"], settings, models, opener))
    return [r["id"] for r in orphans]


def cluster_status(settings: Settings) -> dict[str, Any]:
    """Nodes, resources in use (evaluations hold GPUs / eval CPUs, runs hold run CPUs), runs per status."""
    connect(settings.cluster)
    nodes = [{"node": n["NodeManagerAddress"], "alive": n["Alive"], "cpus": n["Resources"].get("CPU", 0),
              "gpus": n["Resources"].get("GPU", 0), "head": "node:__internal_head__" in n["Resources"]}
             for n in ray.nodes()]
    total, free = ray.cluster_resources(), ray.available_resources()
    resources = {k: {"total": total.get(k, 0), "in_use": round(total.get(k, 0) - free.get(k, 0), 3)}
                 for k in ("CPU", "GPU")}
    inflight = ray.get(scheduler(settings.cluster).inflight_runs.remote()) if settings.store.enabled else []
    runs = RunIndex(settings.store).counts() if settings.store.enabled else {}
    return {"address": settings.cluster.address, "nodes": nodes, "resources": resources,
            "runs": runs, "queue": runs.get("queued", 0), "inflight_runs": inflight}
