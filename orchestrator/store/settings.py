"""The `[store]` and `[cluster]` tables of m3lab.toml (typed; read by orchestrator/config.py).

The store URL may hold a password, so it is also read from M3LAB_STORE_URL (secrets and endpoints only come
from the environment) and never written into run.json."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StoreSettings:
    """Where run state lives besides the run folders."""

    url: str = ""
    """"" = the default: one SQLite checkpoint file per run, the run list read from runs_dir.
    "postgresql://user@host:port/db" = LangGraph's PostgreSQL checkpointer plus the run index and leases."""
    lease_s: float = 30.0
    """How long a run's owner may stay silent before another worker may take the run over (heartbeat: a third)."""
    pool_size: int = 4
    """Connections per process in the psycopg pool (checkpoints, index writes and heartbeats share it)."""

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def describe(self) -> dict[str, str]:
        """For run.json and status output: the kind of store, never the URL (it may carry a password)."""
        return {"kind": "postgresql" if self.enabled else "sqlite"}


@dataclass(frozen=True)
class ClusterSettings:
    """The Ray cluster that `--cluster` submits runs to."""

    address: str = "auto"
    """"auto" (the cluster this node belongs to, as `ray start` left it), "ray://head:10001" (Ray Client) or
    "head:6379" (a cluster's GCS address)."""
    namespace: str = "m3lab"
    """Ray namespace of the scheduler actor and the run tasks."""
    run_cpus: float = 0.5
    """Logical CPUs one run's driver asks for: runs mostly wait on the model endpoint, and never hold a GPU."""
    eval_gpus: float = 1.0
    """GPUs one kernel candidate evaluation asks for (CUDA targets)."""
    eval_cpus: float = 1.0
    """CPUs one kernel candidate evaluation asks for (CPU targets)."""
    max_retries: int = 5
    """How often Ray restarts a run's driver after its worker process or node died (the lease hands it over)."""
    reconcile_s: float = 30.0
    """How often the scheduler actor resubmits queued or running runs that no task carries and no live lease holds
    (their driver, or the scheduler itself, died past Ray's retries); 0 = only `m3lab cluster reconcile`."""
    evaluations: str = "auto"
    """"auto": kernel evaluations of runs driven on the cluster are Ray tasks; "local": in the driver's process."""
