"""Scale-out benchmark (issue 15), on a local Ray cluster (head + 2 worker nodes on loopback) and a real
PostgreSQL server (scripts/setup/services.sh):

1. N = 1, 4, 16 scripted runs submitted at once to the cluster (PostgreSQL checkpoints, leases) vs the same N
   runs one by one in this process (SQLite, the default spine): runs per hour and wall time per iteration.
   Each run: the code task with a scripted model that fails twice and passes in iteration 3, answering at once
   (model time 0: pure spine + cluster overhead) and after 2 s a call (`--latency 2`: runs that wait on a model,
   which is what concurrency buys on a cluster).
2. `runs list` and the viewer's run list at 1,000 runs: the run index (one query) vs the folder scan (read
   every run.json).
3. The cluster-wide endpoint slot (orchestrator/store/slots.py) vs the per-process semaphore: the cost of one
   uncontended acquire + release, and the wall time of 12 callers x 4 requests of 0.5 s through 4 slots (ideal
   6 s; waiters poll, so a freed slot may stay idle up to one poll interval).

    PYTHONPATH=. .venv/bin/python benchmarks/cluster_bench.py [--parts runs list slots] [--runs 1 4 16]
        [--list-runs 1000] [--pg postgresql://postgres@127.0.0.1:55432/m3lab] [--md benchmarks/results/cluster_bench.md]

A run of some parts keeps the other parts' last results (each part records when it was measured).
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

from orchestrator.cluster import submit_run  # noqa: E402
from orchestrator.config import BudgetLimits, ClusterSettings, LoopSettings, Settings  # noqa: E402
from orchestrator.rundir import RunDir, atomic_write_json, list_runs  # noqa: E402
from orchestrator.runner import start_run  # noqa: E402
from orchestrator.store import RunIndex, StoreSettings, index_rows  # noqa: E402
from serving.client import ModelEndpoint  # noqa: E402
from tasks.code.task import CodeTask  # noqa: E402
from tests.fixtures.ray_cluster import LocalRayCluster  # noqa: E402
from tests.orchestrator.cluster import drivers  # noqa: E402
from tests.orchestrator.cluster.drivers import fix_after_2  # noqa: E402
from tests.orchestrator.support import local_opener, make_code_workspace  # noqa: E402

FACTORIES = {0.0: "fix_after_2", 2.0: "fix_after_2_latency_2s"}
OPENER = "tests.orchestrator.support:local_opener"


def fresh_db(base: str) -> str:
    name = f"m3lab_bench_{secrets.token_hex(3)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return base.rsplit("/", 1)[0] + f"/{name}"


def drop_db(base: str, url: str) -> None:
    from orchestrator.store.db import close_all

    close_all()
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def settings(root: Path, url: str = "", address: str = "") -> Settings:
    fast = ModelEndpoint(retry_for_s=0.5)
    return Settings(producer=fast, verifier=fast, runs_dir=root / "runs", budget=BudgetLimits(max_iterations=6),
                    loop=LoopSettings(stuck_patience=20), store=StoreSettings(url=url),
                    cluster=ClusterSettings(address=address or "auto", run_cpus=0.5))


def task(root: Path, i: int) -> CodeTask:
    return CodeTask(source=str(make_code_workspace(root / f"src{i}")), check_command="bash check.sh", main="calc.py")


def one_by_one(root: Path, n: int, latency: float) -> tuple[float, int]:
    s = settings(root)
    models = getattr(drivers, FACTORIES[latency])
    started, iterations = time.monotonic(), 0
    for i in range(n):
        path = start_run(task(root, i), s, models=models, open_sandbox=local_opener)
        iterations += RunDir(path).read_meta()["iteration"]
    return time.monotonic() - started, iterations


def on_cluster(root: Path, n: int, url: str, address: str, latency: float) -> tuple[float, int]:
    s = settings(root, url, address)
    index = RunIndex(s.store)
    models = f"tests.orchestrator.cluster.drivers:{FACTORIES[latency]}"
    started = time.monotonic()
    runs = [submit_run(task(root, i), s, models=models, opener=OPENER) for i in range(n)]
    while any(index.get(r.id)["raw_status"] in ("queued", "running") for r in runs):
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    metas = [r.read_meta() for r in runs]
    bad = [m["id"] for m in metas if m["status"] != "succeeded"]
    if bad:
        raise SystemExit(f"runs did not succeed: {bad}")
    return elapsed, sum(m["iteration"] for m in metas)


def list_latency(root: Path, url: str, count: int) -> dict[str, float]:
    """Write `count` run folders from a real run's run.json (fresh ids) and index them; time both listings."""
    s = settings(root, url)
    template_path = start_run(task(root, 0), dataclasses.replace(s, store=StoreSettings()), models=fix_after_2,
                              open_sandbox=local_opener)
    template = RunDir(template_path).read_meta()
    runs_dir = root / "many"
    index = RunIndex(s.store)
    for i in range(count):
        run_id = f"20261130-{i:06d}-code-{secrets.token_hex(2)}"
        meta = {**template, "id": run_id, "iteration": i % 7}
        atomic_write_json(runs_dir / run_id / "run.json", meta)
        index.upsert(runs_dir / run_id, meta)
    from orchestrator.cli.runs import _row

    def scan() -> int:
        return len([_row(r.read_meta()) for r in list_runs(runs_dir)])

    def query() -> int:
        return len(index_rows(s.store, runs_dir))

    from orchestrator.viewer.store import RunStore

    def viewer_scan() -> int:
        return len(RunStore(runs_dir).list_runs())

    def viewer_index() -> int:
        return len(RunStore(runs_dir, s.store).list_runs())

    out = {}
    for name, fn in (("folder_scan", scan), ("postgres_index", query), ("viewer_folder_scan", viewer_scan),
                     ("viewer_postgres_index", viewer_index)):
        assert fn() == count
        samples = []
        for _ in range(7):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1000)
        out[f"{name}_ms"] = statistics.median(samples)
    return out


def slot_costs(url: str) -> dict[str, float]:
    """Uncontended acquire + release (median of 200, ms) and 12 callers x 4 requests of 0.5 s through 4 slots."""
    import threading

    from orchestrator.store.slots import request_slot

    endpoint = ModelEndpoint(base_url="http://bench.invalid/v1", max_concurrency=4)
    out: dict[str, float] = {}
    for name, store in (("process", StoreSettings()), ("cluster", StoreSettings(url=url))):
        samples = []
        for _ in range(200):
            slot = request_slot(endpoint, store)
            t0 = time.perf_counter()
            with slot:
                pass
            samples.append((time.perf_counter() - t0) * 1000)
        out[f"{name}_acquire_release_ms"] = statistics.median(samples)

        def caller() -> None:
            for _ in range(4):
                with request_slot(endpoint, store):
                    time.sleep(0.5)

        threads = [threading.Thread(target=caller) for _ in range(12)]
        t0 = time.monotonic()
        [t.start() for t in threads]
        [t.join() for t in threads]
        out[f"{name}_contended_wall_s"] = time.monotonic() - t0
    return out


def render(results: dict, list_runs_n: int) -> str:
    """The markdown page of every part's latest results."""
    lines = ["# Cluster benchmark", "",
             f"Machine: {results['machine']}; local Ray cluster = head + 2 worker nodes (4 logical CPUs each, runs "
             "ask 0.5) on loopback; PostgreSQL 15 on loopback. Shared, loaded machine: numbers are noisy.", ""]
    if results.get("runs"):
        lines += [f"## Concurrent runs ({results.get('runs_measured_at', 'earlier run')})", "",
                  "| model s/call | concurrent runs | one by one (s) | cluster (s) | one by one runs/h | cluster runs/h | "
                  "one by one ms/iteration | cluster ms/iteration |", "|---|---|---|---|---|---|---|---|"]
        for r in results["runs"]:
            lines.append(f"| {r['model_latency_s']:g} | {r['runs']} | {r['one_by_one_s']:.1f} | "
                         f"{r['cluster_s']:.1f} | {r['one_by_one_runs_per_h']:.0f} | {r['cluster_runs_per_h']:.0f} | "
                         f"{r['one_by_one_ms_per_iteration']:.0f} | {r['cluster_ms_per_iteration']:.0f} |")
        lines.append("")
    listing = results.get("list") or {}
    if listing:
        lines += [f"## Run lists at {list_runs_n} runs, median of 7 ({results.get('list_measured_at', 'earlier run')})",
                  "", "| listing | folder scan (ms) | PostgreSQL run index (ms) |", "|---|---|---|",
                  f"| `runs list` | {listing['folder_scan_ms']:.1f} | {listing['postgres_index_ms']:.1f} |"]
        if "viewer_folder_scan_ms" in listing:
            lines.append(f"| viewer `/api/runs` rows | {listing['viewer_folder_scan_ms']:.1f} | "
                         f"{listing['viewer_postgres_index_ms']:.1f} |")
        lines.append("")
    slots = results.get("slots") or {}
    if slots:
        lines += [f"## Endpoint slots, max_concurrency = 4 ({results.get('slots_measured_at', 'earlier run')})", "",
                  "| slot | acquire + release, uncontended (ms) | 12 callers x 4 requests of 0.5 s (s; ideal 6.0) |",
                  "|---|---|---|"]
        for name in ("process", "cluster"):
            lines.append(f"| {name} | {slots[f'{name}_acquire_release_ms']:.2f} | "
                         f"{slots[f'{name}_contended_wall_s']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 2.0], choices=sorted(FACTORIES),
                        help="Seconds per model call of the scripted model.")
    parser.add_argument("--list-runs", type=int, default=1000)
    parser.add_argument("--pg", default=os.environ.get("M3LAB_TEST_PG_URL",
                                                       "postgresql://postgres@127.0.0.1:55432/m3lab"))
    parser.add_argument("--md", type=Path, default=Path("benchmarks/results/cluster_bench.md"))
    parser.add_argument("--parts", nargs="+", default=["runs", "list", "slots"], choices=["runs", "list", "slots"])
    args = parser.parse_args()
    json_path = args.md.with_suffix(".json")
    results = json.loads(json_path.read_text()) if json_path.exists() else {}
    now = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="m3lab-cluster-bench-") as tmp:
        root = Path(tmp)
        url = fresh_db(args.pg)
        cluster = LocalRayCluster(root / "ray-logs")
        try:
            if "runs" in args.parts:
                rows = []
                address = cluster.start()
                for latency, n in itertools.product(args.latency, args.runs):
                    local_s, local_it = one_by_one(root / f"local{n}-{latency}", n, latency)
                    ray_s, ray_it = on_cluster(root / f"ray{n}-{latency}", n, url, address, latency)
                    rows.append({"model_latency_s": latency, "runs": n, "one_by_one_s": local_s, "cluster_s": ray_s,
                                 "one_by_one_runs_per_h": n * 3600 / local_s, "cluster_runs_per_h": n * 3600 / ray_s,
                                 "one_by_one_ms_per_iteration": local_s * 1000 / local_it,
                                 "cluster_ms_per_iteration": ray_s * 1000 / ray_it})
                    print(json.dumps(rows[-1]), flush=True)
                cluster.stop()
                results.update(runs=rows, runs_measured_at=now)
            if "list" in args.parts:
                results.update(list=list_latency(root / "list", url, args.list_runs), list_measured_at=now)
            if "slots" in args.parts:
                results.update(slots=slot_costs(url), slots_measured_at=now)
        finally:
            cluster.stop()
            drop_db(args.pg, url)
    results["machine"] = f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}"
    text = render(results, args.list_runs)
    print(text)
    args.md.parent.mkdir(parents=True, exist_ok=True)
    args.md.write_text(text)
    json_path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
