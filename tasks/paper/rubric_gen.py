"""Making a rubric from an ingest bundle: asked of a model, validated, and otherwise built deterministically.

The deterministic rubric is honest about what it knows: code leaves name the paper's method sections and numbered
equations; execution leaves ask for each table and figure to be regenerated; result leaves take every numeric
table cell and decimal number in the text as a target with a tolerance of 5% (at least one unit of the printed
precision), and every figure as a judged side-by-side comparison. Numbers from the text are taken only from
results-like sections when there are any, since method sections state setup values, not results."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable, Sequence

from tasks.paper.bundle import Bundle, ReportedNumber
from tasks.paper.errors import RubricError
from tasks.paper.numbers import decimals_of
from tasks.paper.rubric import RubricNode, parse_rubric

Ask = Callable[[str, Sequence], str]
"""(prompt, image paths) -> reply text: the same shape as `tasks.base.Judge`."""

RELATIVE_TOLERANCE = 0.05
MAX_TABLE_LEAVES = 60
MAX_TEXT_LEAVES = 12
NON_METHOD = re.compile(r"abstract|introduction|related|background|conclusion|discussion|acknowledg|appendix|limitation",
                        re.IGNORECASE)
RESULT_SECTION = re.compile(r"experiment|result|evaluation|ablation|benchmark|performance|finding|analysis",
                            re.IGNORECASE)


@dataclass(frozen=True)
class RubricResult:
    rubric: RubricNode
    source: str
    """"model" or "fallback"."""
    problems: list[str]
    """Why the model's rubric was rejected (empty when it was used)."""


def tolerance_for(number: ReportedNumber) -> float:
    unit = 10.0 ** -decimals_of(number.text)
    return round(max(RELATIVE_TOLERANCE * abs(number.value), unit), 10)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "x"


def metric_key(number: ReportedNumber, index: int) -> str:
    if number.source == "table":
        return f"{number.ref['table']}/{slug(number.ref['row'])}/{slug(number.ref['column'])}"
    return f"text/{index}"


def fallback_rubric(bundle: Bundle) -> RubricNode:
    """The deterministic rubric described in the module docstring."""
    code = [RubricNode(f"code/{slug(s.title)}", f"The code implements what section '{s.title}' of the paper describes.",
                       1.0, task_category="Code Development", finegrained_task_category="Method Implementation")
            for s in bundle.sections if not NON_METHOD.search(s.title)]
    code += [RubricNode(f"code/{e.id}", f"The code implements equation ({e.number or e.id}): {e.text}", 1.0,
                        task_category="Code Development", finegrained_task_category="Method Implementation")
             for e in bundle.equations]
    if not code:
        code = [RubricNode("code/method", f"The code implements the method of '{bundle.title}'.", 1.0,
                           task_category="Code Development", finegrained_task_category="Method Implementation")]
    execution = [RubricNode("exec/reproduce", "Running reproduce.sh completes without error within the time limit.",
                            2.0, task_category="Code Execution", finegrained_task_category="Experimental Setup",
                            extra={"check": "exit_ok"})]
    execution += [RubricNode(f"exec/{t.id}", f"reproduce.sh regenerates {_name(t.caption, t.id)} as results/{t.id}.csv.",
                             1.0, task_category="Code Execution",
                             finegrained_task_category="Logging, Analysis & Presentation",
                             extra={"outputs": [f"results/{t.id}.csv"]}) for t in bundle.tables]
    execution += [RubricNode(f"exec/{f.id}", f"reproduce.sh regenerates {_name(f.caption, f.id)} as figures/{f.id}.png.",
                             1.0, task_category="Code Execution",
                             finegrained_task_category="Logging, Analysis & Presentation",
                             extra={"outputs": [f"figures/{f.id}.png"]}) for f in bundle.figures]
    results = _result_groups(bundle)
    children = [RubricNode("code", "The repository implements the paper's method.", 1.0, code),
                RubricNode("execution", "reproduce.sh runs the experiments and writes the outputs.", 1.0, execution)]
    if results:
        children.append(RubricNode("results", "The re-run reproduces the paper's reported results.", 2.0, results))
    return RubricNode("root", f"Reproduce the paper '{bundle.title}'.", 1.0, children)


def _result_groups(bundle: Bundle) -> list[RubricNode]:
    groups: list[RubricNode] = []
    cells = [n for n in bundle.numbers if n.source == "table"][:MAX_TABLE_LEAVES]
    for table in bundle.tables:
        leaves = [_number_leaf(n, 0) for n in cells if n.ref["table"] == table.id]
        if leaves:
            groups.append(RubricNode(f"results/{table.id}", f"The re-run reproduces {_name(table.caption, table.id)}.",
                                     float(len(leaves)), leaves))
    table_values = {n.value for n in cells}
    text = [n for n in _result_sentences(bundle) if ("." in n.text or "%" in n.text)
            and n.value not in table_values][:MAX_TEXT_LEAVES]
    leaves = [_number_leaf(n, i + 1) for i, n in enumerate(text)]
    if leaves:
        groups.append(RubricNode("results/text", "The re-run reproduces the numbers reported in the text.",
                                 float(len(leaves)), leaves))
    figures = [RubricNode(f"results/{f.id}", f"The reproduced figures/{f.id}.png shows the same content and trends as "
                          f"the paper's {_name(f.caption, f.id)}.", 1.0, task_category="Result Analysis",
                          finegrained_task_category="Logging, Analysis & Presentation",
                          extra={"figure": f.id, "output": f"figures/{f.id}.png"}) for f in bundle.figures]
    if figures:
        groups.append(RubricNode("results/figures", "The re-run reproduces the paper's figures.", float(len(figures)),
                                 figures))
    return groups


def _name(caption: str, fallback: str) -> str:
    """A caption usable inside a sentence (no trailing period)."""
    return caption.rstrip(". ") or fallback


def _result_sentences(bundle: Bundle) -> list[ReportedNumber]:
    """Numbers from results-like sections (setup values in a method section are not results); all sections'
    numbers when no section looks like results."""
    sentence_numbers = [n for n in bundle.numbers if n.source == "sentence"]
    results = [n for n in sentence_numbers if RESULT_SECTION.search(n.ref.get("section", ""))]
    return results or sentence_numbers


def _number_leaf(number: ReportedNumber, index: int) -> RubricNode:
    key = metric_key(number, index)
    where = number.context.rstrip(". ") if number.source == "table" else f'the sentence "{number.context[:160]}"'
    return RubricNode(
        f"results/{key}", f"The re-run reproduces {number.text} from {where}.", 1.0,
        task_category="Result Analysis", finegrained_task_category="Evaluation, Metrics & Benchmarking",
        extra={"metric": key, "expected": number.value, "tolerance": tolerance_for(number)},
    )


def rubric_prompt(bundle: Bundle, draft: RubricNode, max_chars: int | None = None) -> str | None:
    """Ask the model to refine the deterministic draft; it sees the paper's text (cut to fit) and the draft.
    None when even the draft alone does not fit `max_chars`."""
    draft_json = json.dumps(draft.to_json(), separators=(",", ":"))
    head = (
        "You write grading rubrics for reproducing ML papers, in PaperBench's rubric.json format.\n"
        "Improve the DRAFT rubric below for the PAPER below: make the Code Development leaves name the concrete "
        "algorithmic steps, keep every numeric Result Analysis leaf (metric, expected, tolerance) and every "
        "figure leaf unchanged, keep ids unique.\n"
        "Each leaf needs: id, requirements (one sentence), weight (> 0), sub_tasks ([]), task_category "
        "(Code Development | Code Execution | Result Analysis), finegrained_task_category.\n"
        "Reply with only the JSON object in one ```json block.\n\nPAPER:\n"
    )
    tail = f"\n\nDRAFT:\n```json\n{draft_json}\n```\n"
    budget = (max_chars if max_chars is not None else 10**9) - len(head) - len(tail)
    if budget < 500:
        return None
    return head + bundle.text_markdown()[: min(budget, 12000)] + tail


def parse_reply(reply: str) -> RubricNode:
    """The rubric inside a model reply (a ```json block or the outermost braces); raises RubricError."""
    match = re.search(r"```(?:json)?\s*(\{.*?\})\s*```", reply, re.DOTALL)
    raw = match.group(1) if match else reply[reply.find("{"): reply.rfind("}") + 1]
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RubricError(f"the model's reply holds no JSON rubric ({exc.msg})") from exc
    return parse_rubric(data)


def usable_problems(candidate: RubricNode, draft: RubricNode) -> list[str]:
    """Why a model rubric must not replace the draft: it dropped categories or numeric targets."""
    problems = []
    categories = {leaf.task_category for leaf in candidate.leaves()}
    problems += [f"no {c} leaf" for c in ("Code Development", "Code Execution", "Result Analysis")
                 if c not in categories]
    kept = {(leaf.extra.get("metric"), leaf.extra.get("expected")) for leaf in candidate.leaves()}
    lost = [leaf.id for leaf in draft.leaves() if "metric" in leaf.extra
            and (leaf.extra["metric"], leaf.extra["expected"]) not in kept]
    if lost:
        problems.append(f"dropped or changed {len(lost)} numeric result leaves (e.g. {lost[0]})")
    return problems


def generate_rubric(bundle: Bundle, ask: Ask | None, max_prompt_chars: int | None = None) -> RubricResult:
    """The model's rubric when it is valid and keeps the numeric targets, else the deterministic one. The model is
    optional here: a failing call (dead endpoint, context overflow) is a reason to fall back, never a crash."""
    draft = fallback_rubric(bundle)
    if ask is None:
        return RubricResult(draft, "fallback", ["no model given"])
    prompt = rubric_prompt(bundle, draft, max_prompt_chars)
    if prompt is None:
        return RubricResult(draft, "fallback", [f"the draft rubric alone exceeds the model's prompt budget "
                                                f"({max_prompt_chars} chars)"])
    try:
        reply = ask(prompt, [])
    except Exception as exc:  # noqa: BLE001 - any model failure means: use the deterministic rubric
        return RubricResult(draft, "fallback", [f"model call failed: {exc!r}"[:500]])
    try:
        candidate = parse_reply(reply)
    except RubricError as exc:
        return RubricResult(draft, "fallback", [str(exc)])
    problems = usable_problems(candidate, draft)
    if problems:
        return RubricResult(draft, "fallback", problems)
    return RubricResult(candidate, "model", [])
