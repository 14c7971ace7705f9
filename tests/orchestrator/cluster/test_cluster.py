"""Runs and evaluations on a real local Ray cluster (head + 2 worker nodes, CPU only) with run state in a real
PostgreSQL: many runs submitted at once all finish; kill -9 of the worker driving a run hands it to another worker
after the lease with nothing lost or repeated; two workers racing for one run: exactly one drives it; kernel
evaluations as Ray tasks give the same verdicts as local ones. Generous timeouts, no timing assertions."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import ray

from orchestrator.cluster import Offloader, _drive_task, cluster_status, reconcile, submit_run
from orchestrator.config import BudgetLimits, ClusterSettings, LoopSettings, Settings
from orchestrator.runner import create_run
from orchestrator.store import RunIndex, StoreSettings, mirror
from orchestrator.store.slots import evaluations_in_flight
from serving.client import ModelEndpoint
from tasks.code.task import CodeTask
from tests.orchestrator.support import make_code_workspace

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
OPENER = "tests.orchestrator.support:local_opener"


def settings(tmp: Path, pg_url: str, address: str, lease_s: float = 30.0) -> Settings:
    fast = ModelEndpoint(retry_for_s=0.5)
    return Settings(producer=fast, verifier=fast, runs_dir=tmp / "runs", budget=BudgetLimits(max_iterations=12),
                    loop=LoopSettings(stuck_patience=20), store=StoreSettings(url=pg_url, lease_s=lease_s),
                    cluster=ClusterSettings(address=address, run_cpus=0.5, eval_cpus=1.0))


def code_task(tmp: Path, check: str = "bash check.sh") -> CodeTask:
    return CodeTask(source=str(make_code_workspace(tmp)), check_command=check, main="calc.py")


def wait_for(what: str, ok: Callable[[], bool], timeout_s: float = 600.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ok():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(1.0)


def events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines() if line.strip()]


def assert_each_iteration_once(run: Path) -> dict:
    meta = json.loads((run / "run.json").read_text())
    evs = events(run)
    verdicts = Counter(e["iteration"] for e in evs if e["kind"] == "verdict")
    decisions = Counter(e["iteration"] for e in evs if e["kind"] == "decision")
    assert sorted(verdicts) == list(range(1, meta["iteration"] + 1)), verdicts
    assert set(verdicts.values()) == {1} and set(decisions.values()) == {1}
    assert sorted(int(p.stem) for p in (run / "iterations").glob("*.json")) == list(range(1, meta["iteration"] + 1))
    seqs = [e["seq"] for e in evs]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    return meta


N_RUNS = 12


def test_many_runs_submitted_at_once_all_finish(tmp_path: Path, pg_url: str, ray_cluster: str) -> None:
    s = settings(tmp_path, pg_url, ray_cluster)
    runs = [submit_run(code_task(tmp_path / f"w{i}"), s, models="tests.orchestrator.cluster.drivers:fix_after_2",
                       opener=OPENER) for i in range(N_RUNS)]
    index = RunIndex(s.store)
    assert {index.get(r.id)["raw_status"] for r in runs} <= {"queued", "running"}  # submission returned at once
    status = cluster_status(s)
    assert len([n for n in status["nodes"] if n["alive"]]) == 3
    # The driver writes the final status, then frees the lease (its last write first: store.release), so "ended"
    # and "released" are two steps; under load a reader can see the first without the second for a moment.
    wait_for("all runs to end and be released",
             lambda: all(index.get(r.id)["raw_status"] not in ("queued", "running") and index.get(r.id)["owner"] is None
                         for r in runs), timeout_s=1200)
    for r in runs:
        meta = assert_each_iteration_once(r.path)
        assert meta["status"] == "succeeded" and meta["iteration"] == 3
    owners = {e["owner"].split(":")[1] for r in runs for e in events(r.path) if e["kind"] == "lease_acquired"}
    assert len(owners) > 1  # driven by several worker processes


def test_kill9_of_the_driving_worker_hands_the_run_over(tmp_path: Path, pg_url: str, ray_cluster: str) -> None:
    s = settings(tmp_path, pg_url, ray_cluster, lease_s=4.0)
    run = submit_run(code_task(tmp_path, "sleep 1; bash check.sh"), s,
                     models="tests.orchestrator.cluster.drivers:fix_after_6", opener=OPENER)
    index = RunIndex(s.store)
    wait_for("iteration 2", lambda: (json.loads(run.meta_path.read_text()).get("iteration") or 0) >= 2, 600)
    victim = int(json.loads(run.meta_path.read_text())["pid"])
    os.kill(victim, signal.SIGKILL)
    wait_for("the run to end", lambda: index.get(run.id)["raw_status"] not in ("queued", "running"), 900)
    meta = assert_each_iteration_once(run.path)
    assert meta["status"] == "succeeded" and meta["iteration"] == 7
    leases = [e for e in events(run.path) if e["kind"] == "lease_acquired"]
    assert len(leases) >= 2 and len({e["owner"] for e in leases}) == len(leases)
    assert str(victim) == leases[0]["owner"].split(":")[1] and str(victim) not in leases[-1]["owner"]
    assert any(e["kind"] == "run_resumed" for e in events(run.path))


def test_two_workers_racing_for_one_run_exactly_one_drives(tmp_path: Path, pg_url: str, ray_cluster: str) -> None:
    s = settings(tmp_path, pg_url, ray_cluster)
    run = create_run(code_task(tmp_path), s)
    mirror(run, s.store)
    run.update_meta(status="queued")
    models = "tests.orchestrator.cluster.drivers:fix_after_2"
    refs = [_drive_task.options(num_cpus=0.5).remote(str(run.path), s, models, OPENER) for _ in range(2)]
    results = sorted(ray.get(refs, timeout=900))
    assert results == ["skipped: succeeded", "succeeded"]
    assert len([e for e in events(run.path) if e["kind"] == "lease_acquired"]) == 1
    assert assert_each_iteration_once(run.path)["iteration"] == 3


def test_reconcile_resubmits_runs_no_task_carries(tmp_path: Path, pg_url: str, ray_cluster: str) -> None:
    """A run left `queued` with no task (as when the scheduler actor died with its tasks) is resubmitted once."""
    s = settings(tmp_path, pg_url, ray_cluster)
    run = create_run(code_task(tmp_path), s)
    mirror(run, s.store)
    run.update_meta(status="queued")
    models = "tests.orchestrator.cluster.drivers:fix_after_2"
    assert reconcile(s, models=models, opener=OPENER) == [run.id]
    assert reconcile(s, models=models, opener=OPENER) == []  # its task is in flight now
    index = RunIndex(s.store)
    wait_for("the run to end", lambda: index.get(run.id)["raw_status"] not in ("queued", "running"), 600)
    assert assert_each_iteration_once(run.path)["status"] == "succeeded"


def test_kernel_evaluations_as_ray_tasks_match_local(tmp_path: Path, pg_url: str, ray_cluster: str) -> None:
    import shutil

    from tasks.base import CheckContext
    from tasks.kernel.runner import EvalOptions
    from tasks.kernel.targets import TARGETS_DIR
    from tasks.kernel.task import KernelTask

    task = KernelTask(target="softmax", isolation="subprocess", options=EvalOptions(iters=3, warmup=1))
    offload = Offloader(ClusterSettings(address=ray_cluster, eval_cpus=1.0), StoreSettings(url=pg_url))
    candidates = {"honest": TARGETS_DIR / "candidates" / "softmax_torch.py",
                  "cheat": TARGETS_DIR / "cheats" / "c10_nan_wildcard.py"}
    for name, source in candidates.items():
        verdicts = []
        for where, off in (("local", None), ("ray", offload)):
            run = tmp_path / f"{name}-{where}"
            (run / "workspace").mkdir(parents=True)
            task.prepare_workspace(run / "workspace")
            shutil.copy(source, run / "workspace" / "candidate.py")
            ctx = CheckContext(workspace=run / "workspace", run_dir=run, iteration=1, open_sandbox=None,
                               record=lambda e: None, offload=off)
            report = task.check(ctx)
            # The verdict: accepted or not, and every cheat/wrong/error finding. Flags and warnings are about
            # timing noise (A/A spread on a loaded machine) and may differ between two evaluations anywhere.
            verdicts.append((report.passed, report.score > 0,
                             sorted(f for f in report.findings if f.startswith(("cheat", "wrong", "error")))))
        assert verdicts[0] == verdicts[1], name
        assert verdicts[0][0] is (name != "cheat"), name  # the cheat is rejected in both places
    assert offload.submitted == len(candidates)
    assert evaluations_in_flight(StoreSettings(url=pg_url)) == 0  # each was marked while it ran, then unmarked


def test_cli_submit_returns_the_id_at_once_and_logs_follow(tmp_path: Path, pg_url: str, ray_cluster: str) -> None:
    """`m3lab run code … --cluster` prints the run id and returns; `runs logs --follow` follows the run on the
    cluster until it stops (here it pauses: the configured endpoint does not answer, a real outcome of a real run);
    `cluster status` lists the nodes."""
    import subprocess
    import sys

    m3lab = str(Path(sys.executable).with_name("m3lab"))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    config = tmp_path / "m3lab.toml"
    config.write_text(f'runs_dir = "{tmp_path / "runs"}"\n[model]\nbase_url = "http://127.0.0.1:9/v1"\n'
                      f'retry_for_s = 1.0\n[store]\nurl = "{pg_url}"\n[cluster]\naddress = "{ray_cluster}"\n')
    src = make_code_workspace(tmp_path)
    submitted = subprocess.run([m3lab, "run", "code", str(src), "--check", "bash check.sh", "--cluster",
                                "--config", str(config)], capture_output=True, text=True, env=env, timeout=300)
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()
    assert (tmp_path / "runs" / run_id / "run.json").exists()
    follow = subprocess.run([m3lab, "runs", "logs", run_id, "--follow", "--json", "--config", str(config)],
                            capture_output=True, text=True, env=env, timeout=600)
    kinds = [json.loads(line)["kind"] for line in follow.stdout.splitlines() if line.strip()]
    assert kinds[0] == "run_started" and "lease_acquired" in kinds and kinds[-1] == "status"
    shown = json.loads(subprocess.run([m3lab, "runs", "show", run_id, "--json", "--config", str(config)],
                                      capture_output=True, text=True, env=env, timeout=120).stdout)
    assert shown["status"] == "paused" and "endpoint" in shown["stop_reason"]
    status = json.loads(subprocess.run([m3lab, "cluster", "status", "--json", "--config", str(config)],
                                       capture_output=True, text=True, env=env, timeout=120).stdout)
    assert sum(n["alive"] for n in status["nodes"]) == 3 and status["resources"]["CPU"]["total"] == 8
    assert status["runs"].get("paused", 0) >= 1 and status["evaluations_in_flight"] == 0


def test_endpoint_limit_holds_across_the_cluster(pg_url: str, ray_cluster: str) -> None:
    """8 Ray tasks (separate worker processes on 2 nodes) call one real HTTP endpoint with max_concurrency = 2:
    with the store, never more than 2 requests are in flight at the server; without it (the per-process limit)
    the same tasks overrun it, so the check can tell the two apart."""
    import threading

    from tests.orchestrator.cluster.drivers import ask_endpoint
    from tests.serving.test_shared_endpoint import Server

    server = Server()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    ask = ray.remote(num_cpus=0.5)(ask_endpoint)
    seen = {}
    try:
        for scope, store_url in (("process", ""), ("cluster", pg_url)):
            server.max_in_flight = server.calls = 0
            start_at = time.time() + 15  # every task asks at once, after its worker process is up
            assert sum(ray.get([ask.remote(base_url, store_url, 2, 4, start_at) for _ in range(8)], timeout=600)) == 32
            seen[scope] = (server.max_in_flight, server.calls)
    finally:
        server.shutdown()
    assert seen["cluster"] == (2, 32), seen
    assert seen["process"][0] > 2 and seen["process"][1] == 32, seen


def test_runs_of_a_killed_scheduler_are_taken_over_by_themselves(tmp_path: Path, pg_url: str,
                                                                  ray_cluster: str) -> None:
    """The scheduler actor dies with a run in flight (its run task dies with it: Ray kills the tasks of a dead
    owner). Ray restarts the scheduler; its reconcile round resubmits the run once the lease ran out — nobody
    calls reconcile — and the run ends with contiguous iterations, each verdict once."""
    import dataclasses

    from orchestrator.cluster import scheduler_name

    s = settings(tmp_path, pg_url, ray_cluster, lease_s=4.0)
    s = dataclasses.replace(s, cluster=dataclasses.replace(s.cluster, reconcile_s=2.0))
    run = submit_run(code_task(tmp_path, "sleep 1; bash check.sh"), s,
                     models="tests.orchestrator.cluster.drivers:fix_after_6", opener=OPENER)
    index = RunIndex(s.store)
    wait_for("iteration 2", lambda: (json.loads(run.meta_path.read_text()).get("iteration") or 0) >= 2, 600)
    first_driver = int(json.loads(run.meta_path.read_text())["pid"])
    ray.kill(ray.get_actor(scheduler_name(s), namespace=s.cluster.namespace), no_restart=False)
    # Ray fate-shares the run task with its dead owner, but on its own schedule (on a loaded machine the run
    # could finish first): end the driver as the owner's death would, so the takeover is what is tested.
    with contextlib.suppress(ProcessLookupError):
        os.kill(first_driver, signal.SIGKILL)
    wait_for("the run to end", lambda: index.get(run.id)["raw_status"] not in ("queued", "running"), 900)
    meta = assert_each_iteration_once(run.path)
    assert meta["status"] == "succeeded" and meta["iteration"] == 7
    leases = [e for e in events(run.path) if e["kind"] == "lease_acquired"]
    assert len(leases) == 2 and str(first_driver) == leases[0]["owner"].split(":")[1], leases
    assert any(e["kind"] == "run_resumed" for e in events(run.path))
