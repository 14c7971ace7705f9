"""Grading logic with a scripted judge on hand-made re-run evidence (the real re-run is in test_task_docker)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tasks.paper.grading import Evidence, grade, parse_judge_reply
from tasks.paper.reproduce import Reproduction, fresh_files, listing
from tasks.paper.rubric import RubricNode

from .judges import ScriptedJudge, always

RUBRIC = RubricNode("root", "Reproduce.", 1, [
    RubricNode("code", "The code fits least squares.", 1, task_category="Code Development"),
    RubricNode("run", "reproduce.sh exits 0.", 1, task_category="Code Execution", extra={"check": "exit_ok"}),
    RubricNode("table", "writes the table", 1, task_category="Code Execution",
               extra={"outputs": ["results/table_1.csv"]}),
    RubricNode("mse", "MSE of Ours", 1, task_category="Result Analysis",
               extra={"metric": "table_1/ours/mse", "expected": 0.25, "tolerance": 0.0125}),
    RubricNode("delta", "Delta of Ours", 1, task_category="Result Analysis",
               extra={"metric": "table_1/ours/delta", "expected": -1.55, "tolerance": 0.0775}),
    RubricNode("fig", "Figure 1 matches", 1, task_category="Result Analysis",
               extra={"figure": "figure_1", "output": "figures/figure_1.png"}),
])


def _evidence(tmp_path: Path, files: dict[str, str], stale: set[str] = frozenset(), ok: bool = True) -> Evidence:
    """A repository whose `stale` files predate the re-run (committed) and the rest were written by it."""
    repo = tmp_path / "repo"
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    old = time.time() - 3600
    before = {}
    for rel in stale:
        os.utime(repo / rel, (old, old))
        before[rel] = [len(files[rel]), old]
    started = time.time() - 60
    after = listing(repo)
    paper = tmp_path / "paper"
    (paper / "figures").mkdir(parents=True)
    (paper / "figures" / "figure_1.png").write_bytes(b"png")
    rep = Reproduction(True, 0 if ok else 1, "exited", False, 1.0, started, str(tmp_path / "log"), before, after,
                       fresh_files(before, after, started))
    (tmp_path / "log").write_text("log")
    return Evidence(repo, rep, paper)


GOOD = {"results/metrics.json": json.dumps({"table_1/ours/mse": 0.26, "table_1/ours/delta": -1.2}),
        "results/table_1.csv": "Method,MSE,Delta\nOurs,0.26,-1.20\n", "figures/figure_1.png": "img",
        "reproduce.sh": "python3 fit.py\n", "fit.py": "import numpy  # least squares\n"}


def test_numbers_within_and_outside_tolerance(tmp_path: Path) -> None:
    judge = ScriptedJudge(always(1, "looks right"))
    grading = grade(RUBRIC, _evidence(tmp_path, GOOD, stale={"reproduce.sh", "fit.py"}), judge)
    by_id = {g.id: g for g in grading.leaves}
    assert by_id["mse"].score == 1 and by_id["mse"].abs_deviation == pytest.approx(0.01)
    assert by_id["delta"].score == 0 and by_id["delta"].abs_deviation == pytest.approx(0.35)
    assert "outside ±0.0775" in by_id["delta"].explanation
    assert by_id["run"].score == 1 and by_id["table"].score == 1
    assert by_id["code"].method == "judge" and by_id["fig"].method == "judge"
    assert grading.score == pytest.approx(5 / 6)
    code_prompt = next(p for p, _ in judge.calls if "(id: code)" in p)
    assert "fit.py" in code_prompt and "least squares" in code_prompt
    fig_images = next(imgs for p, imgs in judge.calls if "Figure 1 matches" in p)
    assert [p.name for p in fig_images] == ["figure_1.png", "figure_1.png"] and fig_images[0] != fig_images[1]


def test_committed_results_earn_nothing(tmp_path: Path) -> None:
    """Hard-coded outputs that the re-run did not write score 0, whatever their values."""
    ev = _evidence(tmp_path, GOOD, stale=set(GOOD))
    grading = grade(RUBRIC, ev, ScriptedJudge(always(1, "ok")))
    by_id = {g.id: g for g in grading.leaves}
    assert by_id["mse"].score == 0 and "did not write it" in by_id["mse"].explanation
    assert by_id["table"].score == 0 and by_id["fig"].score == 0


def test_table_csv_is_used_when_metrics_json_lacks_the_key(tmp_path: Path) -> None:
    files = {**GOOD, "results/metrics.json": "{}", "results/table_1.csv": "Method,MSE,Delta\nOurs,0.24,−1.56\n"}
    grading = grade(RUBRIC, _evidence(tmp_path, files), None)
    by_id = {g.id: g for g in grading.leaves}
    assert by_id["mse"].got == 0.24 and by_id["delta"].got == -1.56 and by_id["delta"].score == 1
    assert "results/table_1.csv" in by_id["mse"].explanation


def test_without_a_judge_judgement_leaves_score_zero_with_reason(tmp_path: Path) -> None:
    grading = grade(RUBRIC, _evidence(tmp_path, GOOD), None)
    code = next(g for g in grading.leaves if g.id == "code")
    assert (code.score, code.method) == (0.0, "none") and "no judge" in code.explanation


def test_failed_run_fails_the_exit_leaf(tmp_path: Path) -> None:
    grading = grade(RUBRIC, _evidence(tmp_path, GOOD, ok=False), None)
    assert next(g for g in grading.leaves if g.id == "run").explanation == "reproduce.sh failed (exit 1, exited)"


@pytest.mark.parametrize("reply, score", [
    ('{"score": 1, "explanation": "fine"}', 1.0), ('Sure! {"score": 0, "explanation": "no"} bye', 0.0),
    ("PASS", 0.0), ('{"score": "yes"}', 0.0), ('{"score": 7}', 0.0), ("", 0.0),
])
def test_unparsable_judge_replies_never_pass(reply: str, score: float) -> None:
    assert parse_judge_reply(reply)[0] == score


def test_committed_symlinks_never_leak_host_files_to_the_judge(tmp_path: Path) -> None:
    secret = tmp_path / "host_secret.txt"
    secret.write_text("HOST-SECRET")
    ev = _evidence(tmp_path, GOOD)
    (ev.repo / "leak.py").symlink_to(secret)
    judge = ScriptedJudge(always(1, "ok"))
    grade(RUBRIC, ev, judge)
    assert judge.calls and not any("HOST-SECRET" in prompt for prompt, _ in judge.calls)
