"""The PostgreSQL store on a real server: the scripted loop checkpoints into PostgresSaver, the run index follows
run.json, migrations are idempotent, leases give one owner, and a run resumes from PostgreSQL checkpoints."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from orchestrator.config import BudgetLimits, LoopSettings, Settings
from orchestrator.rundir import RunDir, list_runs
from orchestrator.runner import RunNotResumable, create_run, drive, resume_run, start_run
from orchestrator.runtime import Runtime
from orchestrator.store import Lease, LeaseHeld, LeaseLost, RunIndex, StoreSettings, claim, index_rows, sync_folder
from orchestrator.store.db import migrate, pool
from serving.client import ModelEndpoint
from tasks.code.task import CodeTask
from tests.orchestrator.support import PolicyChatModel, Script, fix_after, local_opener, make_code_workspace

pytestmark = pytest.mark.cluster

GOOD = "def add(a, b):\n    return a + b\n"
BAD = "def add(a, b):\n    return a - b\n"


def settings(tmp: Path, url: str, iterations: int = 6) -> Settings:
    fast = ModelEndpoint(retry_for_s=0.5)
    return Settings(producer=fast, verifier=fast, runs_dir=tmp / "runs", budget=BudgetLimits(max_iterations=iterations),
                    loop=LoopSettings(stuck_patience=20), store=StoreSettings(url=url, lease_s=3.0))


def task(tmp: Path) -> CodeTask:
    return CodeTask(source=str(make_code_workspace(tmp)), check_command="bash check.sh", main="calc.py")


def fixer(attempts: int):
    def models(role, endpoint, thinking, max_tokens=None):
        if role == "producer":
            return PolicyChatModel(messages=iter(()), policy=fix_after(attempts, GOOD, BAD))
        return Script().factory()(role, endpoint, thinking)
    return models


def events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines() if line.strip()]


def test_run_checkpoints_in_postgres_and_index_follows_run_json(tmp_path: Path, pg_url: str) -> None:
    s = settings(tmp_path, pg_url)
    path = start_run(task(tmp_path), s, models=fixer(2), open_sandbox=local_opener)
    meta = json.loads((path / "run.json").read_text())
    assert meta["status"] == "succeeded" and meta["iteration"] == 3
    assert not (path / "checkpoints.sqlite").exists()  # the graph's state went to PostgreSQL
    with pool(pg_url).connection() as conn:
        n = conn.execute("SELECT count(*) AS n FROM checkpoints WHERE thread_id = %s", (meta["id"],)).fetchone()["n"]
    assert n > 5
    row = RunIndex(s.store).get(meta["id"])
    assert row["status"] == "succeeded" and row["iteration"] == 3 and row["owner"] is None
    assert row["best_score"] == meta["best_score"] and row["tokens"] == meta["budget"]["used"]["tokens"]
    listed = {r["id"]: r for r in index_rows(s.store, s.runs_dir)}
    assert listed[meta["id"]]["iterations"] == 3 and listed[meta["id"]]["status"] == "succeeded"


def test_migrations_are_idempotent_and_safe_in_parallel(pg_url: str) -> None:
    p = pool(pg_url)
    errors: list[BaseException] = []

    def again() -> None:
        try:
            migrate(p)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=again) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    with p.connection() as conn:
        versions = [r["version"] for r in conn.execute("SELECT version FROM m3lab_migrations").fetchall()]
    assert versions == [1, 2, 3]


def test_lease_one_owner_and_takeover_after_expiry(tmp_path: Path, pg_url: str) -> None:
    s = settings(tmp_path, pg_url)
    run = create_run(task(tmp_path), s)
    index = RunIndex(s.store)
    first = Lease.acquire(index, run.id, lease_s=2.0)
    with pytest.raises(LeaseHeld):
        Lease.acquire(index, run.id, lease_s=2.0)
    first._stop.set()  # the owner "dies": no more heartbeats
    first._thread.join()
    second = None
    for _ in range(100):
        try:
            second = Lease.acquire(index, run.id, lease_s=2.0)
            break
        except LeaseHeld:
            threading.Event().wait(0.2)
    assert second is not None and second.owner != first.owner
    with pytest.raises(LeaseLost):  # the old owner's next write is refused before run.json changes
        first.write_meta(run.path, {**run.read_meta(), "iteration": 99})
    assert RunIndex(s.store).get(run.id)["owner"] == second.owner
    second.release()
    assert RunIndex(s.store).get(run.id)["owner"] is None


def test_racing_claims_exactly_one_wins(tmp_path: Path, pg_url: str) -> None:
    s = settings(tmp_path, pg_url)
    run = create_run(task(tmp_path), s)
    index = RunIndex(s.store)
    won: list[Lease] = []
    lost: list[str] = []
    barrier = threading.Barrier(8)

    def race() -> None:
        barrier.wait()
        try:
            won.append(Lease.acquire(index, run.id, lease_s=30.0))
        except LeaseHeld as exc:
            lost.append(str(exc))

    threads = [threading.Thread(target=race) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(won) == 1 and len(lost) == 7
    won[0].release()


def test_resume_refused_while_another_owner_holds_the_lease(tmp_path: Path, pg_url: str) -> None:
    s = settings(tmp_path, pg_url)
    run = create_run(task(tmp_path), s)
    holder = claim(RunDir(run.path), s.store)
    with pytest.raises(RunNotResumable, match="owned by"):
        resume_run(run.path, s, models=fixer(1), open_sandbox=local_opener)
    holder.release()


def test_interrupted_run_resumes_from_postgres_checkpoint(tmp_path: Path, pg_url: str) -> None:
    """The producer stops mid-run (stop request after iteration 2), resume continues with iteration 3:
    contiguous iterations, each verdict once."""
    from orchestrator.control import request_stop

    s = settings(tmp_path, pg_url, iterations=8)
    t = task(tmp_path)
    run = create_run(t, s)
    calls = {"n": 0}

    def stopping(role, endpoint, thinking, max_tokens=None):
        if role == "producer":
            calls["n"] += 1
            if calls["n"] == 5:  # two producer turns an iteration: this is iteration 3's first
                request_stop(run.path, "test")
        return fixer(4)(role, endpoint, thinking, max_tokens)

    drive(Runtime(run, t, s, stopping, local_opener), resume=False)
    stopped = json.loads(run.meta_path.read_text())
    assert stopped["status"] == "stopped" and 2 <= stopped["iteration"] < 5
    resume_run(run.path, s, models=fixer(4), open_sandbox=local_opener)
    meta = json.loads(run.meta_path.read_text())
    assert meta["status"] == "succeeded"
    verdicts = Counter(e["iteration"] for e in events(run.path) if e["kind"] == "verdict")
    assert sorted(verdicts) == list(range(1, meta["iteration"] + 1)) and set(verdicts.values()) == {1}


def test_a_postgres_run_is_not_resumed_without_its_store(tmp_path: Path, pg_url: str) -> None:
    s = settings(tmp_path, pg_url)
    run = create_run(task(tmp_path), s)
    with pytest.raises(RunNotResumable, match="keeps its checkpoints in postgresql"):
        resume_run(run.path, dataclasses.replace(s, store=StoreSettings()), models=fixer(1), open_sandbox=local_opener)


def test_sync_folder_imports_runs_made_without_a_store(tmp_path: Path, pg_url: str) -> None:
    plain = dataclasses.replace(settings(tmp_path, pg_url), store=StoreSettings())
    path = start_run(task(tmp_path), plain, models=fixer(0), open_sandbox=local_opener)
    s = settings(tmp_path, pg_url)
    assert RunIndex(s.store).get(path.name) is None
    assert sync_folder(RunIndex(s.store), s.runs_dir) >= 1
    assert RunIndex(s.store).get(path.name)["status"] == "succeeded"
    assert [r.id for r in list_runs(s.runs_dir)][0] in {r["id"] for r in index_rows(s.store, s.runs_dir)}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parents[3]
    return subprocess.run([str(Path(sys.executable).with_name("m3lab")), *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root)}, timeout=300)


def test_cli_list_and_show_read_the_index(tmp_path: Path, pg_url: str) -> None:
    s = settings(tmp_path, pg_url)
    path = start_run(task(tmp_path), s, models=fixer(1), open_sandbox=local_opener)
    plain = tmp_path / "plain.toml"
    plain.write_text(f'runs_dir = "{s.runs_dir}"\n')
    stored = tmp_path / "stored.toml"
    stored.write_text(f'runs_dir = "{s.runs_dir}"\n[store]\nurl = "{pg_url}"\n')
    from_folder = json.loads(_cli("runs", "list", "--json", "--config", str(plain), cwd=tmp_path).stdout)
    listed = _cli("runs", "list", "--json", "--config", str(stored), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    from_index = json.loads(listed.stdout)
    assert from_index == from_folder and from_index[0]["id"] == path.name
    shown = json.loads(_cli("runs", "show", path.name, "--json", "--config", str(stored), cwd=tmp_path).stdout)
    assert shown["status"] == "succeeded" and shown["iterations"] == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('[store]\nurl = "postgresql://nobody@127.0.0.1:9/none"\n')
    down = _cli("runs", "list", "--config", str(bad), cwd=tmp_path)
    assert down.returncode == 2 and "run store" in down.stderr and "Traceback" not in down.stderr


def test_viewer_lists_runs_from_the_index(tmp_path: Path, pg_url: str) -> None:
    """With a store, the viewer's run list is the index's: the same rows as the folder scan for finished runs,
    and the lease's status for a run whose owner died (run.json still says running; the index: paused)."""
    import httpx

    from orchestrator.viewer.server import ViewerServer

    s = settings(tmp_path, pg_url)
    done = start_run(task(tmp_path / "a"), s, models=fixer(1), open_sandbox=local_opener)
    orphan = create_run(task(tmp_path / "b"), s)  # create_run mirrors its run.json writes into the index
    orphan.update_meta(status="running")  # as a worker killed mid-run leaves it: no lease behind it
    lists = {}
    for name, store in (("folders", None), ("index", s.store)):
        with ViewerServer(s.runs_dir, port=0, store=store) as viewer:
            lists[name] = {r["id"]: r for r in httpx.get(f"{viewer.url}/api/runs").json()["runs"]}
    assert list(lists["index"]) == list(lists["folders"]) == [orphan.id, done.name]  # newest first
    assert lists["index"][done.name] == lists["folders"][done.name]
    assert lists["index"][done.name]["budget"]["used"]["tokens"] > 0
    assert (lists["folders"][orphan.id]["status"], lists["index"][orphan.id]["status"]) == ("running", "paused")
