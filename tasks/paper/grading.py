"""Stage 3 of a paper check: grade every rubric leaf from the re-run's evidence.

Numeric result leaves are compared deterministically with their tolerance, and only from files the re-run wrote.
Execution leaves with a rule (exit status, expected outputs) are checked by rule. Everything else goes to the
judge (the verifier's model), figures as images next to the paper's; a judge reply that cannot be parsed scores 0,
and without a judge such leaves score 0 with the reason stated."""
from __future__ import annotations

import csv
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from sandboxes import hostfs
from tasks.paper.reproduce import Reproduction, log_tail
from tasks.paper.rubric import RubricNode, weighted_scores
from tasks.paper.rubric_gen import slug

Judge = Callable[[str, Sequence[Path]], str]
METRICS_FILE = "results/metrics.json"
CODE_SUFFIXES = {".py", ".sh", ".r", ".jl", ".m", ".cpp", ".c", ".h", ".cu", ".ipynb", ".toml", ".cfg", ".yaml", ".yml",
                 ".txt"}
MAX_FILE_CHARS = 6000
MAX_CODE_CHARS = 30000
MAX_RESULT_CHARS = 8000


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

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "scores": self.scores, "leaves": [asdict(g) for g in self.leaves]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Grading":
        return cls([LeafGrade(**g) for g in data["leaves"]], dict(data["scores"]), float(data["score"]))


@dataclass(frozen=True)
class Evidence:
    """What the grader may look at: the re-run's copy of the repository and its record, and the paper bundle."""

    repo: Path
    reproduction: Reproduction
    paper_dir: Path

    def is_fresh(self, rel: str) -> bool:
        return rel in set(self.reproduction.fresh)


def grade(rubric: RubricNode, evidence: Evidence, judge: Judge | None) -> Grading:
    metrics, metrics_note = read_metrics(evidence)
    grades = [_grade_leaf(leaf, evidence, metrics, metrics_note, judge) for leaf in rubric.leaves()]
    scores = weighted_scores(rubric, {g.id: g.score for g in grades})
    return Grading(grades, scores, scores[rubric.id])


def read_metrics(evidence: Evidence) -> tuple[dict[str, float], str]:
    """results/metrics.json as {key: number}, only when the re-run wrote it; else {} and the reason."""
    path = evidence.repo / METRICS_FILE
    if not path.is_file():
        return {}, f"{METRICS_FILE} was not written by reproduce.sh"
    if not evidence.is_fresh(METRICS_FILE):
        return {}, f"{METRICS_FILE} exists but reproduce.sh did not write it (committed, possibly hard-coded)"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return {}, f"{METRICS_FILE} is not valid JSON ({exc})"
    out: dict[str, float] = {}
    for key, value in (data.items() if isinstance(data, dict) else []):
        value = value.get("value") if isinstance(value, dict) else value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[str(key)] = float(value)
    return out, ""


def _grade_leaf(leaf: RubricNode, ev: Evidence, metrics: dict[str, float], metrics_note: str,
                judge: Judge | None) -> LeafGrade:
    extra = leaf.extra
    category = leaf.task_category or ""
    if "expected" in extra and "metric" in extra:
        return _grade_number(leaf, ev, metrics, metrics_note)
    if extra.get("check") == "exit_ok":
        ok = ev.reproduction.ok
        why = "reproduce.sh exited 0" if ok else _run_failure(ev.reproduction)
        return LeafGrade(leaf.id, category, float(ok), "rule", why)
    if extra.get("outputs"):
        missing = [o for o in extra["outputs"] if not ev.is_fresh(o)]
        if missing:
            return LeafGrade(leaf.id, category, 0.0, "rule", f"not written by the re-run: {', '.join(missing)}")
        return LeafGrade(leaf.id, category, 1.0, "rule", f"written by the re-run: {', '.join(extra['outputs'])}")
    if "output" in extra and not ev.is_fresh(extra["output"]):
        return LeafGrade(leaf.id, category, 0.0, "rule", f"{extra['output']} was not written by the re-run")
    if judge is None:
        return LeafGrade(leaf.id, category, 0.0, "none", "needs the verifier's judgement and no judge was available")
    prompt, images = judge_request(leaf, ev)
    score, explanation = parse_judge_reply(judge(prompt, images))
    return LeafGrade(leaf.id, category, score, "judge", explanation)


def _run_failure(rep: Reproduction) -> str:
    if not rep.ran:
        return "reproduce.sh is missing"
    if rep.timed_out:
        return f"reproduce.sh timed out after {rep.duration_s:.0f} s"
    return f"reproduce.sh failed (exit {rep.exit_code}, {rep.reason})"


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
    with open(ev.repo / rel, newline="", encoding="utf-8", errors="replace") as f:
        rows = list(csv.reader(f))
    if not rows:
        return None, rel
    header = [slug(h) for h in rows[0]]
    if parts[2] not in header:
        return None, rel
    col = header.index(parts[2])
    for row in rows[1:]:
        if row and slug(row[0]) == parts[1] and col < len(row):
            return parse_number(row[col]), rel
    return None, rel


def judge_request(leaf: RubricNode, ev: Evidence) -> tuple[str, list[Path]]:
    """The judge's prompt for one leaf and the images to show it."""
    category = leaf.task_category or ""
    images: list[Path] = []
    if category == "Code Development":
        evidence = "REPOSITORY FILES:\n" + _code_excerpt(ev.repo)
    elif category == "Code Execution":
        evidence = (f"reproduce.sh outcome: {'ok' if ev.reproduction.ok else _run_failure(ev.reproduction)}\n"
                    f"files written by the re-run: {ev.reproduction.fresh[:200]}\nLOG (tail):\n{log_tail(ev.reproduction, 8000)}")
    else:
        evidence = "FILES WRITTEN BY THE RE-RUN:\n" + _fresh_results(ev)
        if "figure" in leaf.extra:
            paper_png = ev.paper_dir / "figures" / f"{leaf.extra['figure']}.png"
            output = leaf.extra.get("output", "")
            # The re-run's figure is sandbox-written: shown only as a regular file reached without links.
            images = ([paper_png] if paper_png.is_file() else []) + (
                [ev.repo / output] if output and hostfs.is_regular(ev.repo, output) else [])
            evidence += "\nIMAGES: first the paper's figure, then the reproduced one."
    prompt = (
        "You grade one requirement of a paper reproduction. Be strict: reward only what the evidence shows; "
        "hard-coded results or code that does not do what the requirement says earn 0.\n"
        f"REQUIREMENT ({category}): {leaf.requirements}\n\n{evidence}\n\n"
        'Reply with only JSON: {"score": 0 or 1, "explanation": "<one or two sentences>"}'
    )
    return prompt, images


def parse_judge_reply(reply: str) -> tuple[float, str]:
    """(score, explanation); anything unparsable is a 0, never a pass."""
    match = re.search(r"\{.*\}", reply, re.DOTALL)
    if match:
        try:
            data = json.loads(match.group(0))
            score = data.get("score")
            if isinstance(score, (int, float)) and not isinstance(score, bool) and 0 <= score <= 1:
                return float(score), str(data.get("explanation", "")).strip() or "(no explanation)"
        except json.JSONDecodeError:
            pass
    return 0.0, f"unparsable judge reply, scored 0: {reply.strip()[:200]!r}"


def _code_excerpt(repo: Path) -> str:
    """Source files for the judge. Symlinks are never followed: a committed link could point at host files."""
    from tasks.paper.reproduce import listing

    parts: list[str] = []
    total = 0
    for rel in sorted(listing(repo)):
        path = repo / rel
        if rel.startswith("paper/") or path.suffix.lower() not in CODE_SUFFIXES:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")[:MAX_FILE_CHARS]
        if total + len(text) > MAX_CODE_CHARS:
            parts.append(f"--- {rel} (left out: excerpt budget reached)")
            continue
        parts.append(f"--- {rel}\n{text}")
        total += len(text)
    return "\n".join(parts) or "(no source files)"


def _fresh_results(ev: Evidence) -> str:
    parts: list[str] = []
    total = 0
    for rel in ev.reproduction.fresh:
        path = ev.repo / rel
        if path.suffix.lower() not in {".csv", ".json", ".txt", ".md", ".tsv"} or not path.is_file():
            parts.append(f"--- {rel} (binary or other)")
            continue
        text = path.read_text(encoding="utf-8", errors="replace")[:2000]
        if total + len(text) <= MAX_RESULT_CHARS:
            parts.append(f"--- {rel}\n{text}")
            total += len(text)
    return "\n".join(parts) or "(none)"
