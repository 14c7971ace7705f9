"""The rubric tree in PaperBench's rubric.json format, its validation, and weighted scoring.

Node keys: `id`, `requirements` (one sentence), `weight` (relative, > 0), `sub_tasks` (children). Leaves also carry
`task_category` ("Code Development", "Code Execution", "Result Analysis") and `finegrained_task_category` (one of
PaperBench's seven); inner nodes carry neither. These are the rules of PaperBench's own `TaskNode`
(openai/frontier-evals, project/paperbench/paperbench/rubric/tasks.py), checked by `parse_rubric`.
Our additions, all optional: `metric` (key in the reproduction's results/metrics.json), `expected` and `tolerance`
(absolute) for numeric result leaves; `figure` (paper figure id) and `output` (file the re-run must write) for
figure leaves; `outputs` (files the re-run must write) and `check: "exit_ok"` for execution leaves."""
from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from tasks.paper.errors import RubricError

CATEGORIES = ("Code Development", "Code Execution", "Result Analysis")
FINEGRAINED_CATEGORIES = (
    "Environment & Infrastructure Setup", "Dataset and Model Acquisition", "Data Processing & Preparation",
    "Method Implementation", "Experimental Setup", "Evaluation, Metrics & Benchmarking",
    "Logging, Analysis & Presentation",
)
EXTRA_KEYS = ("metric", "expected", "tolerance", "figure", "output", "outputs", "check")


@dataclass
class RubricNode:
    id: str
    requirements: str
    weight: float = 1.0
    sub_tasks: list[RubricNode] = field(default_factory=list)
    task_category: str | None = None
    finegrained_task_category: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_leaf(self) -> bool:
        return not self.sub_tasks

    def leaves(self) -> Iterator[RubricNode]:
        if self.is_leaf:
            yield self
        for child in self.sub_tasks:
            yield from child.leaves()

    def nodes(self) -> Iterator[RubricNode]:
        yield self
        for child in self.sub_tasks:
            yield from child.nodes()

    def to_json(self, scores: Mapping[str, float] | None = None) -> dict[str, Any]:
        # PaperBench's rubrics use integer weights: write them as such when they are whole numbers.
        weight = int(self.weight) if float(self.weight).is_integer() else self.weight
        data: dict[str, Any] = {"id": self.id, "requirements": self.requirements, "weight": weight}
        if self.is_leaf:
            data["task_category"] = self.task_category
            data["finegrained_task_category"] = self.finegrained_task_category
            data.update(self.extra)
        if scores is not None and self.id in scores:
            data["score"] = round(scores[self.id], 4)
        data["sub_tasks"] = [c.to_json(scores) for c in self.sub_tasks]
        return data


def parse_rubric(data: Any) -> RubricNode:
    """Build a rubric from parsed JSON; raise `RubricError` listing ALL problems found."""
    problems: list[str] = []
    root = _parse_node(data, "root", problems)
    if root is not None:
        ids = [n.id for n in root.nodes()]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            problems.append(f"duplicate ids: {dupes}")
    if problems or root is None:
        raise RubricError("invalid rubric: " + "; ".join(problems or ["not a JSON object"]))
    return root


def _parse_node(data: Any, where: str, problems: list[str]) -> RubricNode | None:
    if not isinstance(data, Mapping):
        problems.append(f"{where}: not an object")
        return None
    node_id = str(data.get("id") or "").strip()
    where = node_id or where
    if not node_id:
        problems.append(f"{where}: missing id")
    requirements = data.get("requirements")
    if not isinstance(requirements, str) or not requirements.strip():
        problems.append(f"{where}: missing requirements sentence")
    weight = data.get("weight", 1)
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not weight > 0 or not math.isfinite(weight):
        problems.append(f"{where}: weight must be a positive number, got {weight!r}")
        weight = 1
    raw_children = data.get("sub_tasks") or []
    if not isinstance(raw_children, list):
        problems.append(f"{where}: sub_tasks must be a list")
        raw_children = []
    children = [c for i, raw in enumerate(raw_children) if (c := _parse_node(raw, f"{where}.{i}", problems))]
    node = RubricNode(node_id, str(requirements or "").strip(), float(weight), children)
    if raw_children and data.get("task_category") not in (None, "Subtree"):
        problems.append(f"{where}: an inner node cannot have a task_category (PaperBench rule)")
    if not raw_children:
        node.task_category = data.get("task_category")
        node.finegrained_task_category = data.get("finegrained_task_category")
        node.extra = {k: data[k] for k in EXTRA_KEYS if data.get(k) is not None}
        problems += _leaf_problems(node, where)
    return node


def _leaf_problems(leaf: RubricNode, where: str) -> list[str]:
    problems = []
    if leaf.task_category not in CATEGORIES:
        problems.append(f"{where}: task_category must be one of {list(CATEGORIES)}, got {leaf.task_category!r}")
    fine = leaf.finegrained_task_category
    if fine is not None and fine not in FINEGRAINED_CATEGORIES:
        problems.append(f"{where}: finegrained_task_category must be one of {list(FINEGRAINED_CATEGORIES)}, got {fine!r}")
    expected, tolerance = leaf.extra.get("expected"), leaf.extra.get("tolerance")
    if expected is not None:
        if not _is_number(expected):
            problems.append(f"{where}: expected must be a number, got {expected!r}")
        if not _is_number(tolerance) or tolerance < 0:
            problems.append(f"{where}: a numeric leaf needs tolerance >= 0, got {tolerance!r}")
        if not isinstance(leaf.extra.get("metric"), str):
            problems.append(f"{where}: a numeric leaf needs a metric key (string)")
    outputs = leaf.extra.get("outputs")
    if outputs is not None and not (isinstance(outputs, list) and all(isinstance(o, str) for o in outputs)):
        problems.append(f"{where}: outputs must be a list of file paths")
    return problems


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def load_rubric(path: Path) -> RubricNode:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RubricError(f"{path}: cannot read rubric JSON ({exc})") from exc
    return parse_rubric(data)


def save_rubric(root: RubricNode, path: Path, scores: Mapping[str, float] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(root.to_json(scores), indent=2), encoding="utf-8")


def weighted_scores(root: RubricNode, leaf_scores: Mapping[str, float]) -> dict[str, float]:
    """Score of every node: leaves from `leaf_scores` (missing = 0), parents the weighted mean of children."""
    scores: dict[str, float] = {}

    def visit(node: RubricNode) -> float:
        if node.is_leaf:
            value = min(1.0, max(0.0, float(leaf_scores.get(node.id, 0.0))))
        else:
            total = sum(c.weight for c in node.sub_tasks)
            value = sum(c.weight * visit(c) for c in node.sub_tasks) / total
        scores[node.id] = value
        return value

    visit(root)
    return scores
