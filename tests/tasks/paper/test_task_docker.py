"""PaperTask.check with a REAL Docker sandbox: reproduce.sh re-runs in a fresh container, results are graded only
from files that re-run wrote, and the report is written. The judge is scripted (no model needed)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tasks.base import CheckContext
from tasks.paper.task import PaperTask

from . import tiny_experiment
from .judges import ScriptedJudge, always

pytestmark = pytest.mark.docker


_judge = ScriptedJudge(always(1, "scripted judge: accepted"))


def _check(task: PaperTask, run_dir: Path, iteration: int, events: list) -> object:
    from sandboxes import open_sandbox

    export = run_dir / "checks" / f"{iteration:04d}"
    shutil.copytree(run_dir / "workspace", export)
    ctx = CheckContext(workspace=export, run_dir=run_dir, iteration=iteration,
                       open_sandbox=lambda spec: open_sandbox(spec, backend="docker", pool=False),
                       record=events.append, judge=_judge)
    return task.check(ctx)


@pytest.fixture
def run_dir(tiny_pdf: Path, tmp_path: Path, sandbox_image: str) -> tuple[PaperTask, Path]:
    task = PaperTask(pdf=str(tiny_pdf), reproduce_timeout_s=120, image=sandbox_image, memory_mb=1024)
    (tmp_path / "workspace").mkdir()
    task.prepare_workspace(tmp_path / "workspace")
    return task, tmp_path


def test_honest_reproduction_scores_full(run_dir: tuple[PaperTask, Path]) -> None:
    task, run = run_dir
    ws = run / "workspace"
    contract = json.loads((ws / "paper" / "results_contract.json").read_text())
    assert set(contract["metrics"]) == {"table_1/baseline/mse", "table_1/baseline/delta", "table_1/ours/mse",
                                        "table_1/ours/delta", "text/1"}
    shutil.copy(Path(tiny_experiment.__file__), ws / "reproduce.py")
    events: list = []
    report = _check(task, run, 1, events)
    assert report.passed, report.summary
    assert report.score == pytest.approx(1.0)
    assert report.metrics["timed_out"] == 0 and report.metrics["fresh_files"] >= 3
    assert events[0]["kind"] == "exec" and events[0]["exit_code"] == 0
    grades = json.loads((run / report.evidence_path).read_text())
    mse = next(g for g in grades["leaves"] if g["id"] == "results/table_1/ours/mse")
    assert mse["method"] == "numeric" and mse["abs_deviation"] < 1e-3
    assert task.is_complete(report)
    task.on_iteration_end(run, 1, report, True)
    art = run / "artifacts" / "paper"
    assert (art / "report.html").is_file() and (art / "figures" / "figure_1_compare.png").is_file()
    assert (art / "figures" / "figure_1.paper.png").is_file() and (art / "figures" / "figure_1.reproduced.png").is_file()
    assert json.loads((art / "rubric.json").read_text())["score"] == 1.0
    assert (art / "tables" / "table_1.deviation.csv").is_file()
    assert "Best weighted rubric score: **1.000**" in task.report_section(run)


def test_hard_coded_results_and_timeouts_earn_nothing(run_dir: tuple[PaperTask, Path]) -> None:
    task, run = run_dir
    ws = run / "workspace"
    # The honest outputs, committed beforehand; reproduce.sh only sleeps past its limit.
    shutil.copy(Path(tiny_experiment.__file__), ws / "exp.py")
    import subprocess
    import sys

    subprocess.run([sys.executable, "exp.py"], cwd=ws, check=True, capture_output=True)
    (ws / "reproduce.sh").write_text("sleep 30\n")
    task.reproduce_timeout_s = 3
    report = _check(task, run, 1, [])
    assert not report.passed
    assert report.metrics["timed_out"] == 1
    assert report.metrics["score_results"] == 0
    assert any("did not write it" in f for f in report.findings)
    assert any("timed out" in f for f in report.findings)
