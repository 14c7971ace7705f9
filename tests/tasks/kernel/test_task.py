"""KernelTask: workspace, check (the harness on the committed workspace), tampering with target.py (cheat 16),
program database (CSV, plot, best/), idempotence, report section, rebuild from params."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from tasks.base import CheckContext, CheckReport
from tasks.kernel import database
from tasks.kernel.runner import EvalOptions
from tasks.kernel.targets import TARGETS_DIR
from tasks.kernel.task import KernelTask, KernelTaskError
from tasks.registry import build_task


def _task(**kw: object) -> KernelTask:
    return KernelTask(target="softmax", isolation="subprocess", options=EvalOptions(iters=4, warmup=1),
                      **kw)  # type: ignore[arg-type]


def _ctx(run: Path, iteration: int) -> CheckContext:
    events: list = []

    def no_sandbox(spec):  # noqa: ANN001, ANN202 - isolation="subprocess" never opens one
        raise AssertionError("sandbox opened")

    return CheckContext(workspace=run / "workspace", run_dir=run, iteration=iteration, open_sandbox=no_sandbox,
                        record=events.append)


def _run(tmp: Path, task: KernelTask) -> Path:
    run = tmp / "run"
    (run / "workspace").mkdir(parents=True)
    task.prepare_workspace(run / "workspace")
    return run


def test_params_roundtrip_and_bad_params(tmp_path: Path) -> None:
    task = _task(target_speedup=1.5)
    again = build_task("kernel", task.params())
    assert isinstance(again, KernelTask) and again.params() == task.params()
    assert "softmax" in task.title() and "1.5x" in task.title()
    with pytest.raises(KernelTaskError):
        KernelTask(target="softmax", device="tpu")
    with pytest.raises(KernelTaskError):
        KernelTask(target="fp8_gemm", device="cpu")
    with pytest.raises(FileNotFoundError):
        KernelTask(target="nope")
    changed = tmp_path / "t.py"
    shutil.copy(TARGETS_DIR / "softmax.py", changed)
    t2 = KernelTask(target=str(changed), isolation="subprocess")
    changed.write_text(changed.read_text() + "\n# edited\n")
    with pytest.raises(KernelTaskError, match="changed since"):
        t2.producer_brief()


def test_workspace_brief_and_main_file(tmp_path: Path) -> None:
    task = _task()
    run = _run(tmp_path, task)
    assert (run / "workspace" / "target.py").read_text() == (TARGETS_DIR / "softmax.py").read_text()
    assert "class ModelNew" in (run / "workspace" / "candidate.py").read_text()
    assert task.main_file() == "candidate.py"
    brief = task.producer_brief()
    assert "ModelNew" in brief and "secret seed" in brief and "class Model(nn.Module)" in brief
    assert "gc" in task.verifier_brief() and "stream" in task.verifier_brief()


def test_check_database_and_report(tmp_path: Path) -> None:
    task = _task(target_speedup=100.0)
    run = _run(tmp_path, task)
    # Iteration 1: the starter (the reference renamed): correct, speed-up ~1.
    r1 = task.check(_ctx(run, 1))
    assert r1.passed and r1.score > 0 and "best so far" in r1.summary and r1.evidence_path
    assert (run / r1.evidence_path).is_file() and not task.is_complete(r1)
    task.on_iteration_end(run, 1, r1, accepted=True)
    # Iteration 2: a cheat (NaN wildcard): rejected, score 0.
    shutil.copy(TARGETS_DIR / "cheats" / "c10_nan_wildcard.py", run / "workspace" / "candidate.py")
    r2 = task.check(_ctx(run, 2))
    assert not r2.passed and r2.score == 0.0 and any("NaN" in f for f in r2.findings)
    task.on_iteration_end(run, 2, r2, accepted=False)
    task.on_iteration_end(run, 2, r2, accepted=False)  # idempotent
    table = pd.read_csv(run / "artifacts/kernel/candidates.csv")
    assert list(table["iteration"]) == [1, 2] and list(table["parent"]) == [-1, 1]
    database.record_iteration(run, 3, False, parent=1)  # an island's candidate derived from iteration 1
    assert pd.read_csv(run / "artifacts/kernel/candidates.csv")["parent"].tolist() == [-1, 1, 1]
    assert list(table["accepted"]) == [True, False]
    best = database.best(run)
    assert best is not None and best.iteration == 1
    assert (run / "artifacts/kernel/best/candidate.py").is_file()
    assert (run / "artifacts/kernel/best_speedup.png").stat().st_size > 1000
    section = task.report_section(run)
    assert "Best verified speed-up" in section and "best_speedup.png" in section


def test_edited_target_in_workspace_is_a_cheat(tmp_path: Path) -> None:
    """Cheat 16: the producer makes the reference trivially slow in its copy; the pristine one is used anyway."""
    task = _task()
    run = _run(tmp_path, task)
    ws_target = run / "workspace" / "target.py"
    ws_target.write_text(ws_target.read_text().replace("return e / e.sum", "import time; time.sleep(1); return e / e.sum"))
    (run / "workspace" / "sitecustomize.py").write_text("print('hook')\n")
    r = task.check(_ctx(run, 1))
    assert not r.passed and r.score == 0.0
    assert any("target.py in the workspace was edited" in f for f in r.findings)
    assert any("sitecustomize.py" in f for f in r.findings)


def test_is_complete_only_at_target(tmp_path: Path) -> None:
    task = _task(target_speedup=1.2)
    assert task.is_complete(CheckReport(passed=True, score=1.3, summary=""))
    assert not task.is_complete(CheckReport(passed=True, score=1.1, summary=""))
    assert not task.is_complete(CheckReport(passed=False, score=5.0, summary=""))
    assert not _task().is_complete(CheckReport(passed=True, score=50.0, summary=""))
