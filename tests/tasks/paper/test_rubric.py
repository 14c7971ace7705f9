"""Rubric format, validation, scoring, and generation (scripted model replies + the deterministic fallback)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.paper.bundle import load_bundle
from tasks.paper.errors import RubricError
from tasks.paper.numbers import numbers_in_sentence, parse_number
from tasks.paper.rubric import RubricNode, load_rubric, parse_rubric, save_rubric, weighted_scores
from tasks.paper.rubric_gen import fallback_rubric, generate_rubric


@pytest.mark.parametrize("text, value", [("1.50", 1.5), ("−0.30", -0.3), ("12,000", 12000.0), ("85.2%", 85.2),
                                         ("0.25 ± 0.01", 0.25), ("3.1*", 3.1), ("n/a", None), ("", None),
                                         ("ResNet-50", None), (".5", 0.5)])
def test_parse_number(text: str, value: float | None) -> None:
    assert parse_number(text) == value


def test_numbers_in_sentence_skip_labels_and_citations() -> None:
    found = numbers_in_sentence("Table 2 and Figure 3 show 91.5% accuracy [12], up from 88.0 in Section 4.")
    assert found == [(91.5, "91.5%"), (88.0, "88.0")]


def test_fallback_rubric_on_synthetic_paper(paper_bundle_dir: Path) -> None:
    rubric = fallback_rubric(load_bundle(paper_bundle_dir))
    leaves = list(rubric.leaves())
    categories = {leaf.task_category for leaf in leaves}
    assert categories == {"Code Development", "Code Execution", "Result Analysis"}
    numeric = {leaf.extra["metric"]: (leaf.extra["expected"], leaf.extra["tolerance"]) for leaf in leaves
               if "metric" in leaf.extra}
    assert numeric == {
        "table_1/baseline/mse": (1.5, 0.075), "table_1/baseline/delta": (-0.3, 0.015),
        "table_1/ours/mse": (0.25, 0.0125), "table_1/ours/delta": (-1.55, 0.0775),
        "table_1/oracle/mse": (0.04, 0.01), "table_1/oracle/delta": (-1.71, 0.0855),
        "text/1": (83.4, 4.17),
    }
    assert {leaf.extra.get("figure") for leaf in leaves} >= {"figure_1", "figure_2"}
    assert any(leaf.id == "code/eq_1" for leaf in leaves)
    # The format round-trips through JSON unchanged.
    assert parse_rubric(json.loads(json.dumps(rubric.to_json()))).to_json() == rubric.to_json()


def test_validation_lists_every_problem() -> None:
    bad = {"id": "root", "requirements": "r", "weight": 1, "sub_tasks": [
        {"id": "a", "requirements": "", "weight": -1, "sub_tasks": [], "task_category": "Code Development"},
        {"id": "a", "requirements": "x", "weight": 1, "sub_tasks": [], "task_category": "Vibes"},
        {"id": "n", "requirements": "x", "weight": 1, "sub_tasks": [], "task_category": "Result Analysis",
         "expected": 1.0},
    ]}
    with pytest.raises(RubricError) as info:
        parse_rubric(bad)
    message = str(info.value)
    for needle in ("a: missing requirements", "weight must be a positive number", "task_category must be one of",
                   "needs tolerance", "needs a metric key", "duplicate ids: ['a']"):
        assert needle in message


def test_weighted_scores_and_saved_scores(tmp_path: Path) -> None:
    leaf = lambda i, w: RubricNode(i, f"req {i}", w, task_category="Code Development")  # noqa: E731
    root = RubricNode("root", "all", 1, [RubricNode("g", "group", 3, [leaf("a", 1), leaf("b", 3)]), leaf("c", 1)])
    scores = weighted_scores(root, {"a": 1.0, "b": 0.0, "c": 1.0})
    assert scores["g"] == pytest.approx(0.25)
    assert scores["root"] == pytest.approx((3 * 0.25 + 1) / 4)
    save_rubric(root, tmp_path / "r.json", scores)
    assert json.loads((tmp_path / "r.json").read_text())["sub_tasks"][0]["score"] == 0.25
    assert load_rubric(tmp_path / "r.json").to_json() == root.to_json()


def test_generate_uses_a_valid_model_rubric(paper_bundle_dir: Path) -> None:
    bundle = load_bundle(paper_bundle_dir)
    improved = fallback_rubric(bundle).to_json()
    improved["sub_tasks"][0]["sub_tasks"][0]["requirements"] = "The code fits w and b by ordinary least squares."
    prompts: list[str] = []

    def ask(prompt: str, images: list) -> str:
        prompts.append(prompt)
        return "Here it is:\n```json\n" + json.dumps(improved) + "\n```"

    result = generate_rubric(bundle, ask)
    assert result.source == "model" and not result.problems
    assert next(result.rubric.leaves()).requirements == "The code fits w and b by ordinary least squares."
    assert "Tiny Linear Regression Revisited" in prompts[0] and "DRAFT" in prompts[0]


@pytest.mark.parametrize("reply, problem", [
    ("I think the paper is about regression.", "no JSON rubric"),
    ('```json\n{"id": "root", "requirements": "x", "weight": 1, "sub_tasks": []}\n```', "task_category"),
    ('```json\n{"id": "root", "requirements": "x", "weight": 1, "sub_tasks": [{"id": "a", "requirements": "r", '
     '"weight": 1, "sub_tasks": [], "task_category": "Code Development"}]}\n```', "no Code Execution leaf"),
])
def test_generate_falls_back_on_unusable_replies(paper_bundle_dir: Path, reply: str, problem: str) -> None:
    bundle = load_bundle(paper_bundle_dir)
    result = generate_rubric(bundle, lambda prompt, images: reply)
    assert result.source == "fallback"
    assert problem in " ".join(result.problems)
    assert result.rubric.to_json() == fallback_rubric(bundle).to_json()
