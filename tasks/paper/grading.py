"""Stage 3 of a paper check: grade every rubric leaf from the re-run's evidence.

No model call where the verdict is already decided: numeric result leaves are compared with their tolerance, only
from files the re-run wrote (results/metrics.json, else the regenerated results/table_N.csv); execution leaves with
a rule (exit status, expected outputs) are checked by rule; a judged leaf whose evidence does not exist (no result
files written, no reproduce.sh) scores 0. The rest goes to the judge in batches (`judging`); a reply that cannot be
parsed scores 0, and without a judge such leaves score 0 with the reason stated."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from typing import Any

from sandboxes import hostfs
from tasks.paper.evidence import RESULT_DIRS, Evidence, run_failure
from tasks.paper.judging import (
    DEFAULT_PROMPT_CHARS,
    MAX_BATCH_LEAVES,
    MAX_JUDGE_WORKERS,
    Judge,
    judge_leaves,
    parse_judge_reply,
)
from tasks.paper.rubric import RubricNode, weighted_scores
from tasks.paper.rubric_results import slug
from tasks.paper.tables import row_label

METRICS_FILE = "results/metrics.json"
MAX_RESULT_BYTES = 16 << 20
__all__ = ["Evidence", "Grading", "LeafGrade", "grade", "parse_judge_reply", "read_metrics"]


@dataclass
class LeafGrade:
    id: str
    category: str
    score: float
    method: str
    """"numeric", "rule", "judge" or "none" (could not be graded)."""
    explanation: str
    expected: float | None = None
    got: float | None = None
    tolerance: float | None = None
    abs_deviation: float | None = None
    rel_deviation: float | None = None


@dataclass
class Grading:
    leaves: list[LeafGrade]
    scores: dict[str, float]
    score: float
    judge_calls: int = 0
    """Model calls the grading made (decided leaves cost none)."""

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "scores": self.scores, "judge_calls": self.judge_calls,
                "leaves": [asdict(g) for g in self.leaves]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Grading:
        return cls([LeafGrade(**g) for g in data["leaves"]], dict(data["scores"]), float(data["score"]),
                   int(data.get("judge_calls", 0)))


def grade(rubric: RubricNode, evidence: Evidence, judge: Judge | None, max_prompt_chars: int | None = None,
          max_batch_leaves: int = MAX_BATCH_LEAVES, max_workers: int = MAX_JUDGE_WORKERS) -> Grading:
    """Grade every leaf: decided ones by rule (no model call), the rest by the judge in batches that share their
    evidence, sent concurrently (see `batching`). `max_batch_leaves=1` judges leaf by leaf."""
    metrics, metrics_note = read_metrics(evidence)
    leaves = list(rubric.leaves())
    decided = {leaf.id: g for leaf in leaves if (g := decided_grade(leaf, evidence, metrics, metrics_note, judge))}
    undecided = [leaf for leaf in leaves if leaf.id not in decided]
    budget = max_prompt_chars or DEFAULT_PROMPT_CHARS
    verdicts, calls = (judge_leaves(undecided, evidence, judge, budget, max_batch_leaves, max_workers)
                       if judge and undecided else ({}, 0))
    grades = [decided.get(leaf.id) or _judged(leaf, *verdicts[leaf.id]) for leaf in leaves]
    scores = weighted_scores(rubric, {g.id: g.score for g in grades})
    return Grading(grades, scores, scores[rubric.id], calls)


def _judged(leaf: RubricNode, score: float, explanation: str) -> LeafGrade:
    return LeafGrade(leaf.id, leaf.task_category or "", score, "judge", explanation)


def read_metrics(evidence: Evidence) -> tuple[dict[str, float], str]:
    """results/metrics.json as {key: number}, only when the re-run wrote it; else {} and the reason."""
    if not hostfs.is_regular(evidence.repo, METRICS_FILE):  # sandbox-written: no link is followed
        return {}, f"{METRICS_FILE} was not written by reproduce.sh"
    if not evidence.is_fresh(METRICS_FILE):
        return {}, f"{METRICS_FILE} exists but reproduce.sh did not write it (committed, possibly hard-coded)"
    try:
        data = json.loads(hostfs.read_bytes(evidence.repo, METRICS_FILE, MAX_RESULT_BYTES))
    except (OSError, ValueError) as exc:
        return {}, f"{METRICS_FILE} is not valid JSON ({exc})"
    out: dict[str, float] = {}
    for key, value in (data.items() if isinstance(data, dict) else []):
        value = value.get("value") if isinstance(value, dict) else value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[str(key)] = float(value)
    return out, ""


def decided_grade(leaf: RubricNode, ev: Evidence, metrics: dict[str, float], metrics_note: str,
                  judge: Judge | None) -> LeafGrade | None:
    """The grade of a leaf whose verdict needs no judge (numbers, rules, missing evidence); None otherwise."""
    extra = leaf.extra
    category = leaf.task_category or ""
    if "expected" in extra and "metric" in extra:
        return _grade_number(leaf, ev, metrics, metrics_note)
    if extra.get("check") == "exit_ok":
        ok = ev.reproduction.ok
        why = "reproduce.sh exited 0" if ok else run_failure(ev.reproduction)
        return LeafGrade(leaf.id, category, float(ok), "rule", why)
    if extra.get("outputs"):
        missing = [o for o in extra["outputs"] if not ev.is_fresh(o)]
        if missing:
            return LeafGrade(leaf.id, category, 0.0, "rule", f"not written by the re-run: {', '.join(missing)}")
        return LeafGrade(leaf.id, category, 1.0, "rule", f"written by the re-run: {', '.join(extra['outputs'])}")
    if "output" in extra and not ev.is_fresh(extra["output"]):
        return LeafGrade(leaf.id, category, 0.0, "rule", f"{extra['output']} was not written by the re-run")
    lacking = missing_evidence(category, ev)
    if lacking:
        return LeafGrade(leaf.id, category, 0.0, "rule", lacking)
    if judge is None:
        return LeafGrade(leaf.id, category, 0.0, "none", "needs the verifier's judgement and no judge was available")
    return None


def missing_evidence(category: str, ev: Evidence) -> str | None:
    """Why a judged leaf of `category` must score 0 whatever a judge would say (the evidence does not exist)."""
    if category == "Code Execution" and not ev.reproduction.ran:
        return "reproduce.sh is missing: nothing was executed"
    if category == "Result Analysis" and not [f for f in ev.reproduction.fresh if f.split("/", 1)[0] in RESULT_DIRS]:
        return f"the re-run wrote no result files ({' or '.join(d + '/' for d in RESULT_DIRS)}): no evidence of results"
    return None


def _grade_number(leaf: RubricNode, ev: Evidence, metrics: dict[str, float], metrics_note: str) -> LeafGrade:
    key, expected, tol = leaf.extra["metric"], float(leaf.extra["expected"]), float(leaf.extra["tolerance"])
    got, where = metrics.get(key), METRICS_FILE
    if got is None:
        got, where = _from_table_csv(key, ev)
    base = LeafGrade(leaf.id, leaf.task_category or "", 0.0, "numeric", "", expected=expected, tolerance=tol)
    if got is None:
        base.explanation = f"metric {key!r} not produced by the re-run ({metrics_note or 'key missing'})"
        return base
    dev = abs(got - expected)
    base.got, base.abs_deviation = got, dev
    base.rel_deviation = dev / abs(expected) if expected else None
    base.score = float(dev <= tol + 1e-12)
    verdict = "within" if base.score else "outside"
    base.explanation = f"{key}: reproduced {got:g} vs paper {expected:g} (|Δ|={dev:.4g}, {verdict} ±{tol:g}; from {where})"
    return base


def _from_table_csv(key: str, ev: Evidence) -> tuple[float | None, str]:
    """A "table_N/row/column" metric read from a fresh results/table_N.csv (first column = row labels)."""
    from tasks.paper.numbers import parse_number

    parts = key.split("/")
    rel = f"results/{parts[0]}.csv"
    if len(parts) != 3 or not ev.is_fresh(rel):
        return None, rel
    try:
        text = hostfs.read_bytes(ev.repo, rel, MAX_RESULT_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return None, rel
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
        return None, rel
    header = [slug(h) for h in rows[0]]
    if parts[2] not in header:
        return None, rel
    col = header.index(parts[2])
    for row in rows[1:]:
        # The rubric names a row by its leading text cells ("CIFAR-10 ResNet-56"); a re-run may write one label.
        if row and parts[1] in (slug(row[0]), slug(row_label(row))) and col < len(row):
            return parse_number(row[col]), rel
    return None, rel
