"""Rubric format, validation, scoring, and generation (scripted model replies + the deterministic fallback)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.paper.asker import prompt_budget
from tasks.paper.bundle import Bundle, Section, Table, load_bundle
from tasks.paper.errors import RubricError
from tasks.paper.numbers import numbers_in_sentence, parse_number
from tasks.paper.rubric import RubricNode, load_rubric, parse_rubric, save_rubric, weighted_scores
from tasks.paper.rubric_gen import fallback_rubric, generate_rubric, parse_piece_reply
from tasks.paper.rubric_results import cell_tolerance, ours_rows


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
        # Half the gap to Ours (-1.55) is below 5% of -1.71: the tolerance keeps the two apart.
        "table_1/oracle/mse": (0.04, 0.01), "table_1/oracle/delta": (-1.71, 0.08),
        "text/1": (83.4, 4.17),
    }
    assert {leaf.extra.get("figure") for leaf in leaves} >= {"figure_1", "figure_2"}
    # The paper's own method is named and weighs more; equations never become leaves.
    ours = next(leaf for leaf in leaves if leaf.id == "results/table_1/ours/mse")
    assert ours.weight == 2 and "row 'Ours' (the paper's method), column 'MSE'" in ours.requirements
    assert not any("eq" in leaf.id or "equation" in leaf.requirements for leaf in leaves)
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


def _leaves_reply(*requirements: str) -> str:
    return "Sure:\n" + json.dumps([{"requirements": r, "weight": 2} for r in requirements])


def test_generate_writes_method_leaves_and_keeps_the_results(paper_bundle_dir: Path) -> None:
    bundle = load_bundle(paper_bundle_dir)
    prompts: list[str] = []

    def ask(prompt: str, images: list) -> str:
        prompts.append(prompt)
        return _leaves_reply("The code fits w and b by ordinary least squares.",
                             "The code draws noisy samples of a line.")

    result = generate_rubric(bundle, ask)
    assert result.source == "model" and not result.problems and result.calls == len(prompts) == 2
    method = next(n for n in result.rubric.nodes() if n.id == "code/2_method")
    assert [leaf.requirements for leaf in method.sub_tasks] == [
        "The code fits w and b by ordinary least squares.", "The code draws noisy samples of a line."]
    assert "Tiny Linear Regression Revisited" in prompts[0] and "ordinary least squares" in prompts[0]
    draft = fallback_rubric(bundle)
    numeric = lambda r: {(x.id, x.extra.get("expected"), x.extra.get("tolerance"))  # noqa: E731
                         for x in r.leaves() if "metric" in x.extra}
    assert numeric(result.rubric) == numeric(draft)  # numbers and tolerances are never the model's
    parse_rubric(result.rubric.to_json())


def _bundle_with_long_method(chars: int) -> Bundle:
    sentence = "We update the attention weights with a gated residual of the previous layer's keys. "
    text = sentence * (chars // len(sentence))
    return Bundle("x.pdf", "Gated Attention", {}, 9, [Section("1 Introduction", 1, "We study attention."),
                  Section("2 Method", 2, text), Section("4 Results", 5, "Our model improves accuracy by 2.5%.")],
                  [], [], [], [], [])


def test_the_model_step_runs_in_pieces_that_fit_a_4k_context() -> None:
    bundle = _bundle_with_long_method(30_000)
    budget = prompt_budget(4096, 16384)
    prompts: list[str] = []

    def ask(prompt: str, images: list) -> str:
        prompts.append(prompt)
        return _leaves_reply(f"The code gates the residual of piece {len(prompts)}.")

    result = generate_rubric(bundle, ask, budget.prompt_chars)
    assert result.source == "model" and len(prompts) == result.calls >= 4
    assert all(len(p) <= budget.prompt_chars for p in prompts)
    assert "part 1 of" in prompts[0]
    method = next(n for n in result.rubric.nodes() if n.id == "code/2_method")
    assert len(method.sub_tasks) == len(prompts)


@pytest.mark.parametrize("chars", [-41000, 0, 700])
def test_a_budget_too_small_for_any_piece_says_so_plainly(chars: int) -> None:
    result = generate_rubric(_bundle_with_long_method(5000), lambda p, i: pytest.fail("no call expected"), chars)
    assert result.source == "fallback" and result.calls == 0
    assert f"prompt budget ({chars} characters)" in result.problems[0] and "instructions" in result.problems[0]


@pytest.mark.parametrize("reply, problem", [
    ("I think the paper is about regression.", "no JSON list"),
    ('[{"requirements": "short"}]', "no usable requirement"),
    ("[1, 2", "no JSON list"),
])
def test_generate_falls_back_on_unusable_replies(paper_bundle_dir: Path, reply: str, problem: str) -> None:
    bundle = load_bundle(paper_bundle_dir)
    result = generate_rubric(bundle, lambda prompt, images: reply)
    assert result.source == "fallback"
    assert problem in " ".join(result.problems) and "section '2 Method'" in result.problems[0]
    assert result.rubric.to_json() == fallback_rubric(bundle).to_json()


def test_a_failing_piece_keeps_the_draft_leaf_and_says_why(paper_bundle_dir: Path) -> None:
    bundle = load_bundle(paper_bundle_dir)

    def ask(prompt: str, images: list) -> str:
        if "2 Method" in prompt:
            raise ConnectionError("endpoint went away")
        return _leaves_reply("The code splits the 200 points into train and test sets.")

    result = generate_rubric(bundle, ask)
    assert result.source == "model" and "endpoint went away" in " ".join(result.problems)
    assert next(n for n in result.rubric.nodes() if n.id == "code/2_method").is_leaf


PAPERBENCH_TASK_CATEGORIES = {"Code Development", "Code Execution", "Result Analysis"}
PAPERBENCH_FINEGRAINED = {"Environment & Infrastructure Setup", "Dataset and Model Acquisition",
                          "Data Processing & Preparation", "Method Implementation", "Experimental Setup",
                          "Evaluation, Metrics & Benchmarking", "Logging, Analysis & Presentation"}


def paperbench_problems(node: dict, seen: set[str]) -> list[str]:
    """PaperBench's own TaskNode rules (openai/frontier-evals paperbench/rubric/tasks.py), written out here
    independently of our parser: required keys, numeric non-negative weight, categories only on leaves and from
    its lists, unique ids."""
    problems = [f"{node.get('id')}: missing {k}" for k in ("id", "requirements", "weight", "sub_tasks") if k not in node]
    if node.get("id") in seen:
        problems.append(f"duplicate id {node['id']}")
    seen.add(node.get("id"))
    if not isinstance(node.get("weight"), (int, float)) or node["weight"] < 0:
        problems.append(f"{node.get('id')}: bad weight")
    leaf = not node.get("sub_tasks")
    if leaf and node.get("task_category") not in PAPERBENCH_TASK_CATEGORIES:
        problems.append(f"{node['id']}: leaf without a valid task_category")
    if not leaf and node.get("task_category"):
        problems.append(f"{node['id']}: inner node with a task_category")
    if node.get("finegrained_task_category") and node["finegrained_task_category"] not in PAPERBENCH_FINEGRAINED:
        problems.append(f"{node['id']}: bad finegrained_task_category")
    for child in node.get("sub_tasks") or []:
        problems += paperbench_problems(child, seen)
    return problems


def test_generated_rubrics_pass_paperbench_schema(paper_bundle_dir: Path) -> None:
    bundle = load_bundle(paper_bundle_dir)
    for rubric in (fallback_rubric(bundle), generate_rubric(bundle, lambda p, i: _leaves_reply(
            "The code fits w and b by ordinary least squares.")).rubric):
        data = json.loads(json.dumps(rubric.to_json()))
        assert paperbench_problems(data, set()) == []
        assert all(isinstance(n["weight"], int) for n in _all_nodes(data))


def _all_nodes(node: dict) -> list[dict]:
    return [node] + [n for child in node["sub_tasks"] for n in _all_nodes(child)]


def test_parse_rubric_enforces_paperbench_categories() -> None:
    bad = {"id": "root", "requirements": "r", "weight": 1, "task_category": "Code Development", "sub_tasks": [
        {"id": "a", "requirements": "x", "weight": 1, "sub_tasks": [], "task_category": "Code Development",
         "finegrained_task_category": "Vibes"}]}
    with pytest.raises(RubricError) as info:
        parse_rubric(bad)
    assert "inner node cannot have a task_category" in str(info.value)
    assert "finegrained_task_category must be one of" in str(info.value)


@pytest.mark.parametrize("text, value, others, tolerance", [
    ("58.9 ± 1.9", 58.9, [50.0], 1.9),            # the printed spread
    ("84.20", 84.2, [18.37, 57.52], 4.21),        # far from its baselines: 5% of the value
    ("0.25", 0.25, [0.30, 1.5], 0.0125),          # 5% of 0.25 is below half the gap to 0.30
    ("71.2", 71.2, [70.9, 65.0], 0.15),           # close competitor: half the gap keeps them apart
    ("71.2", 71.2, [71.2, 71.2], 3.56),           # ties only: 5%
    ("3.2 × 10⁻⁴", 3.2e-4, [3.0e-4], 1e-5),       # scientific notation: units of the mantissa's precision
    ("12", 12.0, [12.1], 1.0),                    # never below one printed unit
])
def test_tolerances_come_from_the_papers_spread(text: str, value: float, others: list, tolerance: float) -> None:
    assert cell_tolerance(text, value, others) == pytest.approx(tolerance)


def _table(caption: str, header: list[str], rows: list[list[str]], styles: list | None = None) -> Table:
    table = Table("table_2", 3, (0, 0, 1, 1), caption, header, rows, "tables/table_2.csv", 0)
    if styles is not None:
        table.styles = styles
    return table


def test_result_leaves_name_table_row_column_and_number_and_skip_setup_values() -> None:
    results = _table("Table 2: Test accuracy (%) on three benchmarks.", ["Method", "#Params", "CIFAR-10", "SVHN"],
                     [["ResNet-18", "11M", "93.0", "96.1"], ["Mixup", "11M", "94.1", "96.5"],
                      ["Ours", "11M", "95.3 ± 0.2", "97.0"]])
    hyper = _table("Table 3: Hyper-parameters of all runs.", ["Name", "Value"], [["lr", "0.1"], ["batch", "128"]])
    hyper.id = "table_3"
    bundle = Bundle("p.pdf", "Ours", {}, 8, [Section("4 Results", 3, "Table 2 shows it. As Table 2 shows, we win.")],
                    [], [results, hyper], [], [], [])
    leaves = {leaf.id: leaf for leaf in fallback_rubric(bundle).leaves() if leaf.task_category == "Result Analysis"}
    ours = leaves["results/table_2/ours/cifar_10"]
    assert ours.requirements == ("Table 2, row 'Ours' (the paper's method), column 'CIFAR-10': the re-run "
                                 "reproduces the paper's 95.3 ± 0.2.")
    assert (ours.extra["expected"], ours.extra["tolerance"], ours.weight) == (95.3, 0.2, 2)
    assert leaves["results/table_2/mixup/svhn"].extra["tolerance"] == pytest.approx(0.2)  # half the gap to 96.1
    assert not [i for i in leaves if "param" in i or "table_3" in i]
    group = next(n for n in fallback_rubric(bundle).nodes() if n.id == "results/table_2")
    assert group.weight == 3  # cited twice in the main text


def test_bold_marks_the_method_when_no_row_is_named() -> None:
    table = _table("Table 2: Results.", ["Model", "BLEU", "chrF"], [["Base", "27.1", "55.0"], ["Big", "28.4", "56.2"]],
                   styles=[["", "", ""], ["", "b", "b"]])
    assert ours_rows(table, None) == {1}


def test_piece_replies_are_read_through_surrounding_prose() -> None:
    reply = 'Here: [{"requirements": "The code computes the Gorder score of a window.", "weight": 5}] and [more]'
    assert parse_piece_reply(reply) == [("The code computes the Gorder score of a window.", 3)]
