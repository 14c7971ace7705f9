"""State changes from outside the loop are checked and atomic: resume under the run's lock (a refused resume
changes nothing), steer/stop of an ended run write nothing, a run folder appears whole or not at all (kill -9
while it is created), a full disk pauses the run (real tmpfs, and an injected ENOSPC), listings survive a
broken run.json."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.config import BudgetLimits, LoopSettings, Settings
from orchestrator.control import RunEnded, add_steer, request_stop
from orchestrator.rundir import effective_status, list_runs
from orchestrator.runner import DiskFull, RunNotResumable, create_run, resume_run, start_run
from orchestrator.viewer.store import RunStore
from serving.client import ModelEndpoint
from tasks.code.task import CodeTask
from tests.orchestrator.support import Script, local_opener, make_code_workspace, tool_call

ROOT = Path(__file__).resolve().parents[2]
GOOD = "def add(a, b):\n    return a + b\n"


def settings(runs: Path, iterations: int = 3) -> Settings:
    fast = ModelEndpoint(retry_for_s=0.5)
    return Settings(producer=fast, verifier=fast, runs_dir=runs, budget=BudgetLimits(max_iterations=iterations),
                    loop=LoopSettings(stuck_patience=10**6, max_turns=2))


def task(tmp: Path) -> CodeTask:
    return CodeTask(source=str(make_code_workspace(tmp)), check_command="bash check.sh", main="calc.py")


def snapshot(run: Path) -> dict[str, bytes]:
    """Every file of a run folder (but the lock file) and its bytes."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file() and p.name != ".lock" and ".git" not in p.parts}


def m3lab(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", "from orchestrator.cli import main; main()", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


def test_refused_resume_changes_nothing(tmp_path: Path) -> None:
    run = create_run(task(tmp_path), settings(tmp_path / "runs"))
    run.update_meta(status="running", pid=os.getpid())  # live: this very process
    before = snapshot(run.path)
    with pytest.raises(RunNotResumable, match="already running"):
        resume_run(run.path, settings(tmp_path / "runs"), open_sandbox=local_opener,
                   budget_overrides={"max_iterations": 50})
    assert snapshot(run.path) == before
    run.update_meta(status="succeeded", pid=None)
    before = snapshot(run.path)
    with pytest.raises(RunNotResumable, match="already succeeded"):
        resume_run(run.path, settings(tmp_path / "runs"), open_sandbox=local_opener,
                   budget_overrides={"max_iterations": 50})
    assert snapshot(run.path) == before


_CLAIM = """
import sys, time
from orchestrator.rundir import RunDir
from orchestrator.runner import RunNotResumable, claim_for_resume
try:
    claim_for_resume(RunDir(sys.argv[1]), {"max_iterations": int(sys.argv[2])})
except RunNotResumable:
    print("refused", flush=True)
    sys.exit(0)
print("claimed", flush=True)
time.sleep(3)
"""


def test_simultaneous_resumes_one_claims(tmp_path: Path) -> None:
    run = create_run(task(tmp_path), settings(tmp_path / "runs"))
    run.update_meta(status="paused")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", _CLAIM, str(run.path), str(10 + i)], env=env,
                              stdout=subprocess.PIPE, text=True) for i in range(3)]
    answers = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(answers) == ["claimed", "refused", "refused"]
    winner = answers.index("claimed")
    assert run.read_meta()["config"]["budget"]["max_iterations"] == 10 + winner  # only the winner's budget


def test_steer_and_stop_of_an_ended_run_write_nothing(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    script = Script(producer=[tool_call("write_file", path="calc.py", content=GOOD), tool_call("done", summary="ok")])
    path = start_run(task(tmp_path), settings(runs), models=script.factory(), open_sandbox=local_opener)
    assert json.loads((path / "run.json").read_text())["status"] == "succeeded"
    before = snapshot(path)
    with pytest.raises(RunEnded, match="has ended"):
        add_steer(path, "more")
    with pytest.raises(RunEnded, match="has ended"):
        request_stop(path)
    (tmp_path / "m3lab.toml").write_text(f'runs_dir = "{runs}"\n')
    for args in (("steer", path.name, "more"), ("stop", path.name)):
        proc = m3lab(tmp_path, "runs", *args)
        assert proc.returncode == 1 and "has ended (succeeded)" in proc.stderr and "Traceback" not in proc.stderr
    assert snapshot(path) == before


def test_stop_of_a_paused_run_marks_it_stopped(tmp_path: Path) -> None:
    run = create_run(task(tmp_path), settings(tmp_path / "runs"))
    run.update_meta(status="running", pid=999_999_999)  # crashed: reads as paused
    assert request_stop(run.path) == "paused"
    assert run.read_meta()["status"] == "stopped"
    with pytest.raises(RunEnded):
        request_stop(run.path)


_KILLED_CREATOR = """
import os, signal, sys
from pathlib import Path
from orchestrator.runner import create_run
from tests.orchestrator.test_run_state import settings, task

class KilledWhileFilling(type(task(Path(sys.argv[1])))):
    def prepare_workspace(self, workspace):
        super().prepare_workspace(workspace)
        os.kill(os.getpid(), signal.SIGKILL)

t = task(Path(sys.argv[1]))
create_run(KilledWhileFilling(**{k: getattr(t, k) for k in t.params()}), settings(Path(sys.argv[1]) / "runs"))
"""


def test_kill_while_a_run_is_created_leaves_no_run(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", _KILLED_CREATOR, str(tmp_path)], env=env, cwd=ROOT, timeout=60)
    assert proc.returncode == -9
    runs = tmp_path / "runs"
    assert list_runs(runs) == [] and RunStore(runs).list_runs() == []
    assert [p.name.startswith(".new-") for p in runs.iterdir()] == [True]  # hidden, not a run
    run = create_run(task(tmp_path), settings(runs))  # a later start removes the dead creator's folder
    assert [p.name for p in runs.iterdir()] == [run.id]
    assert effective_status(run.read_meta()) == "created"


def _no_temp_files(run: Path) -> list[Path]:
    return [p for p in run.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".new-")]


def test_injected_disk_full_pauses_then_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import orchestrator.graph as graph

    real = graph.write_iteration_record
    calls = {"n": 0}

    def full_once(*args, **kwargs):  # noqa: ANN002, ANN003
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(graph, "write_iteration_record", full_once)
    runs = tmp_path / "runs"
    script = Script(default={"producer": tool_call("write_file", path="calc.py", content="x = 1\n")})
    with pytest.raises(DiskFull, match="disk full under .*m3lab runs resume"):
        start_run(task(tmp_path), settings(runs), models=script.factory(), open_sandbox=local_opener)
    run = list_runs(runs)[0]
    meta = run.read_meta()
    assert meta["status"] == "paused" and "disk full" in meta["stop_reason"] and meta["pid"] is None
    assert _no_temp_files(run.path) == []
    resume_run(run.path, settings(runs), models=script.factory(), open_sandbox=local_opener)
    # The iteration whose record hit the full disk is completed after the resume; the same reply every time then
    # stops the run as stuck (repeated output) or at its budget, whichever comes first.
    meta = run.read_meta()
    records = sorted(p.name for p in (run.path / "iterations").glob("*.json"))
    assert meta["status"] == "stopped" and meta["iteration"] >= 2
    assert records == [f"{i:04d}.json" for i in range(1, meta["iteration"] + 1)]


@pytest.fixture
def small_disk(tmp_path: Path):  # noqa: ANN201
    """A 3 MiB tmpfs (root only: skipped elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_real_full_disk_pauses_cleanly_and_resumes(tmp_path: Path, small_disk: Path) -> None:
    """The producer writes ~1 MiB a turn into a 3 MiB runs folder: wherever the disk fills (event log,
    run.json, checkpoint, git), the run pauses with one line, leaves no temp file, and resumes with room."""
    runs = small_disk / "runs"
    big = "# " + "x" * 1_000_000 + "\n"
    policy = Script(default={"producer": tool_call("write_file", path=f"big-{time.time_ns()}.py", content=big)})
    policy.next = lambda role: (tool_call("write_file", path=f"big-{time.time_ns()}.py", content=big)  # type: ignore
                                if role == "producer" else Script.next(policy, role))
    with pytest.raises(DiskFull) as info:
        start_run(task(tmp_path), settings(runs, iterations=20), models=policy.factory(), open_sandbox=local_opener)
    assert "\n" not in str(info.value)
    run = list_runs(runs)[0]
    assert effective_status(run.read_meta()) == "paused"
    assert _no_temp_files(run.path) == []
    subprocess.run(["mount", "-o", "remount,size=200m", str(small_disk)], check=True)
    done = Script(producer=[tool_call("write_file", path="calc.py", content=GOOD), tool_call("done", summary="ok")])
    resume_run(run.path, settings(runs, iterations=20), models=done.factory(), open_sandbox=local_opener)
    assert run.read_meta()["status"] == "succeeded"


def test_listings_survive_broken_run_json(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    good = create_run(task(tmp_path), settings(runs))
    broken = {"cut": '{"id": "cut", "task": {"ki', "list": "[1, 2]", "no-task": '{"id": "no-task"}',
              "bad-field": json.dumps({**good.read_meta(), "id": "bad-field", "iteration": "x", "pid": "y"})}
    for name, text in broken.items():
        (runs / name).mkdir()
        (runs / name / "run.json").write_text(text)
    (runs / "paper-inputs").mkdir()  # not a run: no run.json
    (tmp_path / "m3lab.toml").write_text(f'runs_dir = "{runs}"\n')
    proc = m3lab(tmp_path, "runs", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["id"]: r for r in json.loads(proc.stdout)}
    assert set(rows) == {good.id, *broken}
    assert rows[good.id]["status"] == "created"
    assert all(rows[n]["status"] == "unreadable" and rows[n]["error"] for n in broken)
    assert "not valid JSON" in rows["cut"]["error"] and "not an object" in rows["list"]["error"]
    assert "lacks the run id or the task kind" in rows["no-task"]["error"]
    proc = m3lab(tmp_path, "runs", "list")
    assert proc.returncode == 0 and proc.stdout.count("unreadable") == 4, proc.stdout + proc.stderr
    proc = m3lab(tmp_path, "runs", "show", "cut")
    assert proc.returncode == 2 and "run cut is unreadable: run.json is not valid JSON" in proc.stderr
    viewer = {r.id: r for r in RunStore(runs).list_runs()}
    assert set(viewer) == {good.id, *broken}
    assert viewer["cut"].status == "unreadable" and "not valid JSON" in (viewer["cut"].stop_reason or "")
    assert viewer["bad-field"].status == "unreadable"
