"""`m3lab cluster status|sync` and the pieces the other command groups use when a store or a cluster is
configured (`--cluster` submission, index-backed listing and status)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from orchestrator.cli.common import ConfigOpt, JsonOpt, fail, load, print_json

console = Console()
cluster_app = typer.Typer(help="The Ray cluster and the PostgreSQL run store (see README: scale-out).",
                          no_args_is_help=True)
ClusterOpt = typer.Option(False, "--cluster", help="Submit to the Ray cluster of [cluster] address and return the "
                                                   "run id at once (needs [store] url and a shared runs_dir).")


def register(app: typer.Typer) -> None:
    app.add_typer(cluster_app, name="cluster")


def _store_error(exc: Exception) -> NoReturn:
    fail(f"run store: {exc}")


def index_rows_or_fail(settings: Any) -> list[dict[str, Any]]:
    from orchestrator.store import StoreUnavailable, index_rows

    try:
        return index_rows(settings.store, settings.runs_dir)
    except StoreUnavailable as exc:
        _store_error(exc)


def status_or_fail(run: Any, settings: Any, meta: Mapping[str, Any] | None = None) -> str:
    from orchestrator.store import StoreUnavailable, run_status

    try:
        return run_status(run, settings.store, meta)
    except StoreUnavailable as exc:
        _store_error(exc)


def submit(task: Any, settings: Any, resume: Any = None) -> None:
    """`--cluster`: queue the run (new, or `resume`, a RunDir) on the cluster and print its id at once."""
    from orchestrator.cluster import ClusterError, submit_resume, submit_run
    from orchestrator.store import StoreUnavailable

    try:
        if resume is not None:
            submit_resume(resume, settings)
            run = resume
        else:
            run = submit_run(task, settings)
    except (ClusterError, StoreUnavailable) as exc:
        fail(str(exc))
    print(run.id)
    Console(stderr=True).print(f"queued on the cluster; follow: m3lab runs logs {run.id} --follow")


@cluster_app.command("status")
def status(config: ConfigOpt = None, json_out: JsonOpt = False) -> None:
    """Nodes, CPUs/GPUs in use by runs and evaluations, runs per status and the queue."""
    from orchestrator.cluster import ClusterError, cluster_status
    from orchestrator.store import StoreUnavailable

    settings = load(config)
    try:
        report = cluster_status(settings)
    except (ClusterError, StoreUnavailable) as exc:
        fail(str(exc))
    if json_out:
        return print_json(report)
    table = Table("node", "head", "alive", "CPUs", "GPUs")
    for n in report["nodes"]:
        table.add_row(n["node"], "yes" if n["head"] else "", "yes" if n["alive"] else "NO", f"{n['cpus']:g}",
                      f"{n['gpus']:g}")
    console.print(table)
    for name, r in report["resources"].items():
        console.print(f"{name}: {r['in_use']:g}/{r['total']:g} in use")
    console.print("runs: " + (", ".join(f"{k} {v}" for k, v in sorted(report["runs"].items())) or "none")
                  + f"; queue {report['queue']}; tasks in flight {len(report['inflight_runs'])}")
    if report.get("evaluations_in_flight") is not None:
        console.print(f"kernel evaluations in flight: {report['evaluations_in_flight']}")
    for url, slots in report.get("endpoint_slots", {}).items():
        console.print(f"model requests in flight to {url}: {slots['in_use']}/{slots['limit']}")


@cluster_app.command("reconcile")
def reconcile_cmd(config: ConfigOpt = None) -> None:
    """Resubmit queued or running runs that no cluster task carries any more (e.g. the scheduler actor died)."""
    from orchestrator.cluster import ClusterError, reconcile
    from orchestrator.store import StoreUnavailable

    try:
        ids = reconcile(load(config))
    except (ClusterError, StoreUnavailable) as exc:
        fail(str(exc))
    console.print(f"resubmitted {len(ids)} runs" + (": " + ", ".join(ids) if ids else ""))


@cluster_app.command("sync")
def sync(config: ConfigOpt = None, runs_dir: Path | None = typer.Option(None, help="Folder to import.")) -> None:
    """Import run folders into the run index (runs made before [store] url was set)."""
    from orchestrator.store import RunIndex, StoreUnavailable, sync_folder

    settings = load(config)
    if not settings.store.enabled:
        fail("no run store configured: set store.url in m3lab.toml (or M3LAB_STORE_URL)")
    try:
        count = sync_folder(RunIndex(settings.store), runs_dir or settings.runs_dir)
    except StoreUnavailable as exc:
        _store_error(exc)
    console.print(f"indexed {count} runs")
