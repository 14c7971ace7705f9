"""Grading that scales: a 100-leaf rubric graded in batches (few calls, concurrently) with the same verdicts as
leaf-by-leaf judging on a scripted judge; no call where the verdict is already decided; forgetful or garbage
replies never pass."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from tasks.paper.asker import prompt_budget
from tasks.paper.grading import grade
from tasks.paper.rubric import RubricNode

from .judges import ScriptedJudge, always
from .test_grading import _evidence

TOPICS = ["least squares", "ridge penalty", "cross validation", "bootstrap", "early stopping", "dropout",
          "attention", "tokenizer", "beam search", "softmax"]


def _leaf(leaf_id: str, text: str, category: str, **extra: object) -> RubricNode:
    return RubricNode(leaf_id, text, 1, task_category=category, extra=dict(extra))


def hundred_leaf_rubric() -> RubricNode:
    """100 leaves as a generated rubric has them: code leaves in three sections, execution leaves, numeric table
    cells, claims and figures."""
    code = [RubricNode(f"code/s{s}", f"Section {s}", 1, [
        _leaf(f"code/s{s}/{i}", f"The code implements the {TOPICS[(s * 10 + i) % 10]} step {i} of section {s}.",
              "Code Development") for i in range(10)]) for s in range(3)]
    execution = [_leaf("exec/reproduce", "reproduce.sh exits 0.", "Code Execution", check="exit_ok"),
                 _leaf("exec/table_1", "writes table 1", "Code Execution", outputs=["results/table_1.csv"])]
    execution += [_leaf(f"exec/run_{i}", f"reproduce.sh runs the {TOPICS[i]} experiment.", "Code Execution")
                  for i in range(10)]
    numbers = [_leaf(f"results/table_1/r{i}/acc", f"Table 1 row {i}", "Result Analysis",
                     metric=f"table_1/r{i}/acc", expected=float(i), tolerance=0.5) for i in range(40)]
    claims = [_leaf(f"results/claim_{i}", f"The results show that {TOPICS[i % 10]} beats the baseline ({i}).",
                    "Result Analysis") for i in range(14)]
    figures = [_leaf(f"results/figure_{i}", f"figures/figure_{i}.png matches the paper's Figure {i}.",
                     "Result Analysis", figure=f"figure_{i}", output=f"figures/figure_{i}.png") for i in range(1, 5)]
    root = RubricNode("root", "Reproduce.", 1, [
        RubricNode("code", "code", 2, code), RubricNode("execution", "execution", 1, execution),
        RubricNode("results", "results", 3, [RubricNode("results/table_1", "t1", 2, numbers),
                                             RubricNode("results/claims", "claims", 1, claims),
                                             RubricNode("results/figures", "figures", 1, figures)])])
    assert len(list(root.leaves())) == 100
    return root


def by_topic(requirement: str, evidence: str) -> tuple[int, str]:
    """Pass when the requirement's topic occurs in the evidence: verdicts depend on both, like a real judge's."""
    topic = next((t for t in TOPICS if t in requirement), None)
    ok = topic is not None and topic in evidence
    return int(ok), f"{topic} {'found' if ok else 'not found'} in the evidence"


def _repo_files() -> dict[str, str]:
    metrics = {f"table_1/r{i}/acc": float(i) + (0.2 if i % 3 else 0.9) for i in range(40)}
    files = {"results/metrics.json": json.dumps(metrics), "results/table_1.csv": "a,b\n1,2\n",
             "results/log.txt": "least squares beats the baseline; bootstrap too; attention 0.91",
             "reproduce.sh": "python3 fit.py\n", "fit.py": "# least squares, cross validation, dropout, softmax\n"}
    files |= {f"figures/figure_{i}.png": "img" for i in range(1, 5)}
    return files


def test_batched_grading_matches_leaf_by_leaf_in_at_most_ten_calls(tmp_path: Path) -> None:
    rubric = hundred_leaf_rubric()
    one_by_one, batched = ScriptedJudge(by_topic), ScriptedJudge(by_topic)
    ev = _evidence(tmp_path, _repo_files(), stale={"reproduce.sh", "fit.py"})
    reference = grade(rubric, ev, one_by_one, max_batch_leaves=1)
    result = grade(rubric, ev, batched)
    assert [(g.id, g.score, g.method) for g in result.leaves] == [(g.id, g.score, g.method) for g in reference.leaves]
    assert result.score == pytest.approx(reference.score)
    judged = [g for g in reference.leaves if g.method == "judge"]
    assert len(judged) == 58 and reference.judge_calls == 58 == len(one_by_one.calls)
    assert result.judge_calls == len(batched.calls) <= 10
    assert {g.score for g in judged} == {0.0, 1.0}  # the scripted verdicts are mixed, so equality means something
    numeric = [g for g in result.leaves if g.method == "numeric"]
    assert len(numeric) == 40 and sum(g.score for g in numeric) == 26  # i % 3 == 0 rows are 0.9 off: outside ±0.5


def test_batches_fit_the_embedded_models_context(tmp_path: Path) -> None:
    """On a 4K-token server every prompt fits the prompt budget; batches are smaller, still far fewer calls."""
    budget = prompt_budget(4096, 16384)
    assert (budget.reply_tokens, budget.prompt_chars) == (1024, (4096 - 1024 - 256) * 3)
    files = _repo_files() | {f"src/module_{i}.py": "x = 1  # " + "least squares " * 300 for i in range(20)}
    judge = ScriptedJudge(by_topic)
    grading = grade(hundred_leaf_rubric(), _evidence(tmp_path, files), judge, max_prompt_chars=budget.prompt_chars)
    assert judge.calls and all(len(prompt) <= budget.prompt_chars for prompt, _ in judge.calls)
    assert grading.judge_calls <= 10


def test_no_call_when_the_verdict_is_decided(tmp_path: Path) -> None:
    """The re-run wrote no result files: result leaves score 0 without a call; numbers are graded from files."""
    files = {"reproduce.sh": "true\n", "fit.py": "# least squares\n"}
    judge = ScriptedJudge(always(1))
    grading = grade(hundred_leaf_rubric(), _evidence(tmp_path, files, stale=set(files)), judge)
    by_id = {g.id: g for g in grading.leaves}
    assert by_id["results/claim_0"].score == 0 and by_id["results/claim_0"].method == "rule"
    assert "no result files" in by_id["results/claim_0"].explanation
    assert by_id["results/figure_1"].method == "rule" and by_id["results/table_1/r1/acc"].method == "numeric"
    assert not any("beats the baseline" in prompt or "Figure 1" in prompt for prompt, _ in judge.calls)
    assert grading.judge_calls == len(judge.calls) == 3  # 30 code leaves (2 batches) + 10 execution leaves (1)


def test_missing_reproduce_sh_decides_execution_leaves(tmp_path: Path) -> None:
    ev = _evidence(tmp_path, {"fit.py": "# least squares\n"})
    ev.reproduction.ran = False
    judge = ScriptedJudge(always(1))
    grading = grade(hundred_leaf_rubric(), ev, judge)
    run = next(g for g in grading.leaves if g.id == "exec/run_0")
    assert (run.score, run.method) == (0.0, "rule") and "missing" in run.explanation
    assert not any("experiment." in prompt for prompt, _ in judge.calls)


def test_leaves_a_reply_forgets_are_asked_once_more_then_score_zero(tmp_path: Path) -> None:
    rubric = RubricNode("root", "r", 1, [_leaf(f"code/{i}", f"The code implements {t}.", "Code Development")
                                        for i, t in enumerate(TOPICS[:4])])
    judge = ScriptedJudge(always(1), drop=["code/2"])
    grading = grade(rubric, _evidence(tmp_path, _repo_files()), judge)
    by_id = {g.id: g for g in grading.leaves}
    assert [by_id[f"code/{i}"].score for i in range(4)] == [1, 1, 0, 1]
    assert "did not grade" in by_id["code/2"].explanation
    assert grading.judge_calls == 2 and "(id: code/2)" in judge.calls[1][0] and "(id: code/0)" not in judge.calls[1][0]


def test_garbage_replies_never_pass(tmp_path: Path) -> None:
    judge = ScriptedJudge(always(1), garbage=True)
    grading = grade(hundred_leaf_rubric(), _evidence(tmp_path, _repo_files()), judge)
    assert all(g.score == 0 for g in grading.leaves if g.method == "judge")
    assert grading.judge_calls <= 20  # each batch asked at most twice


def test_batches_are_sent_concurrently_and_bounded(tmp_path: Path) -> None:
    state = {"now": 0, "peak": 0}
    lock = threading.Lock()

    def slow(requirement: str, evidence: str) -> tuple[int, str]:
        return 1, "ok"

    class SlowJudge(ScriptedJudge):
        def __call__(self, prompt: str, images=()) -> str:  # type: ignore[override]
            with lock:
                state["now"] += 1
                state["peak"] = max(state["peak"], state["now"])
            time.sleep(0.2)
            with lock:
                state["now"] -= 1
            return super().__call__(prompt, images)

    grade(hundred_leaf_rubric(), _evidence(tmp_path, _repo_files()), SlowJudge(slow), max_batch_leaves=5,
          max_workers=3)
    assert state["peak"] == 3
