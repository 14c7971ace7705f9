"""Making a rubric from an ingest bundle: a deterministic draft, refined by a model in pieces that fit its context.

The draft (`fallback_rubric`) is built like a PaperBench rubric: Result Analysis leaves from the paper's results
tables, result numbers and claims of the text and results figures (`rubric_results`), Code Execution leaves
(reproduce.sh runs; each results table and figure is regenerated), and one Code Development leaf per method
section. Equations and hyper-parameter values never become leaves.

The model step asks, for each method section (cut into pieces that fit the served context), for the concrete
things the code must implement; those leaves replace the section's generic leaf. Pieces are independent, asked
concurrently (bounded), and a piece that fails keeps the draft's leaf with the reason in `problems`. Numbers,
tolerances and result leaves are never the model's: they come from the paper's printed values."""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tasks.paper import rubric_results as rr
from tasks.paper.asker import first_json
from tasks.paper.bundle import Bundle, Section, unique_id
from tasks.paper.numbers import sentences
from tasks.paper.rubric import RubricNode
from tasks.paper.rubric_results import slug

Ask = Callable[[str, Sequence], str]
"""(prompt, image paths) -> reply text: the same shape as `tasks.base.Judge`."""

NON_METHOD = re.compile(r"abstract|introduction|related|background|conclusion|discussion|acknowledg|appendix|"
                        r"limitation|reference|impact|ethic|reproducibility", re.IGNORECASE)
MIN_PIECE_CHARS = 600
"""A piece of section text shorter than this says too little to ask about."""
MAX_PIECE_CHARS = 12_000
MAX_PIECES = 12
MAX_MODEL_LEAVES = 6
MAX_WORKERS = 4
REPLY_TOKENS = 640
"""A piece's reply is at most MAX_MODEL_LEAVES one-sentence items: about 400 tokens, with room to spare."""
ROOT_WEIGHTS = {"code": 2, "execution": 1, "results": 3}
"""PaperBench weighs results most: matching them is what a reproduction is for."""


@dataclass(frozen=True)
class RubricResult:
    rubric: RubricNode
    source: str
    """"model" (at least one piece of the model's was used) or "fallback"."""
    problems: list[str]
    """Why the model was not used, or which pieces fell back to the draft (empty when every piece was used)."""
    calls: int = 0
    """Model calls made."""


def fallback_rubric(bundle: Bundle) -> RubricNode:
    """The deterministic rubric described in the module docstring."""
    results, outputs = _results(bundle)
    children = [RubricNode("code", "The repository implements the paper's method and experiments.",
                           ROOT_WEIGHTS["code"], _code_leaves(bundle)),
                RubricNode("execution", "reproduce.sh runs the experiments and writes the outputs.",
                           ROOT_WEIGHTS["execution"], _execution_leaves(outputs))]
    if results:
        children.append(RubricNode("results", "The re-run reproduces the paper's reported results.",
                                   ROOT_WEIGHTS["results"], results))
    return RubricNode("root", f"Reproduce the paper '{bundle.title}'.", 1, children)


def method_sections(bundle: Bundle) -> list[Section]:
    """Sections that describe the method: not front/back matter, not results, and titled with a word (a stray
    "25 g g" heading is a figure's label, not a section)."""
    return [s for s in bundle.sections if not NON_METHOD.search(s.title) and not rr.RESULTS_SECTION.search(s.title)
            and re.search(r"[A-Za-z]{3,}", s.title)]


def setup_sections(bundle: Bundle) -> list[Section]:
    method = {id(s) for s in method_sections(bundle)}
    return [s for s in bundle.sections if re.search(r"experiment|setup|evaluation", s.title, re.IGNORECASE)
            and not NON_METHOD.search(s.title) and id(s) not in method]


def _code_leaves(bundle: Bundle) -> list[RubricNode]:
    taken: set[str] = set()
    leaves = [RubricNode(unique_id(f"code/{slug(s.title)}", taken),
                         f"The code implements what section '{s.title}' describes{_gist(s)}.", 1,
                         task_category="Code Development", finegrained_task_category="Method Implementation")
              for s in method_sections(bundle)]
    leaves += [RubricNode(unique_id(f"code/setup_{slug(s.title)}", taken),
                          f"The code sets up the experiments of section '{s.title}' (data, models, baselines, "
                          "metrics) as the paper describes.", 1, task_category="Code Development",
                          finegrained_task_category="Experimental Setup") for s in setup_sections(bundle)]
    return leaves or [RubricNode("code/method", f"The code implements the method of '{bundle.title}'.", 1,
                                 task_category="Code Development", finegrained_task_category="Method Implementation")]


def _gist(section: Section) -> str:
    first = rr.INLINE_EQUATION.sub("[equation]", next(iter(sentences(section.text)), ""))
    return f" (it begins: \"{first[:160]}\")" if len(first) > 30 else ""


def _execution_leaves(outputs: list[tuple[str, str, str]]) -> list[RubricNode]:
    leaves = [RubricNode("exec/reproduce", "Running reproduce.sh completes without error within the time limit.", 2,
                         task_category="Code Execution", finegrained_task_category="Experimental Setup",
                         extra={"check": "exit_ok"})]
    leaves += [RubricNode(f"exec/{item}", f"reproduce.sh regenerates {name} as {path}.", 1,
                          task_category="Code Execution", finegrained_task_category="Logging, Analysis & Presentation",
                          extra={"outputs": [path]}) for item, name, path in outputs]
    return leaves


def _results(bundle: Bundle) -> tuple[list[RubricNode], list[tuple[str, str, str]]]:
    """The results groups and the (id, name, path) of every output they need."""
    groups: list[RubricNode] = []
    outputs: list[tuple[str, str, str]] = []
    name = rr.method_name(bundle.title)
    tables = sorted(bundle.tables, key=lambda t: -rr.emphasis(bundle, "table", rr.table_number(t.id), t.page))
    found = [(table, cells) for table in tables if (cells := rr.table_cells(table, name))]
    share = max(rr.MIN_TABLE_SHARE, rr.MAX_RESULT_LEAVES // max(1, len(found)))
    table_values: set[float] = set()
    for table, cells in found:
        cells = cells[:share]
        table_values |= {c.value for c in cells}
        label = f"Table {rr.table_number(table.id)}"
        caption = _name(table.caption, label)
        groups.append(RubricNode(f"results/{table.id}", "The re-run reproduces the results of "
                                 + (caption if caption.startswith(label) else f"{label}: {caption}") + ".",
                                 rr.emphasis(bundle, "table", rr.table_number(table.id), table.page),
                                 _cell_leaves(cells, label)))
        outputs.append((table.id, _name(table.caption, table.id), f"results/{table.id}.csv"))
    text = rr.text_results(bundle, table_values)
    if text:
        groups.append(RubricNode("results/text", "The re-run reproduces the result numbers stated in the text.",
                                 2, [_text_leaf(t, i + 1) for i, t in enumerate(text)]))
    claims = rr.claims(bundle, {t.sentence for t in text})
    if claims:
        groups.append(RubricNode("results/claims", "The re-run's results support the paper's main claims.", 2, [
            RubricNode(f"results/claim_{i + 1}", f"The results written by the re-run support the paper's claim "
                       f"(section '{section}'): \"{sentence}\"", 2 if "abstract" in section.lower() else 1,
                       task_category="Result Analysis", finegrained_task_category="Evaluation, Metrics & Benchmarking")
            for i, (section, sentence) in enumerate(claims)]))
    figures = rr.result_figures(bundle)
    if figures:
        groups.append(RubricNode("results/figures", "The re-run reproduces the paper's results figures.", 1, [
            RubricNode(f"results/{f.id}", f"The reproduced figures/{f.id}.png shows the same content and trends as "
                       f"the paper's {_name(f.caption, f.id)}.",
                       rr.emphasis(bundle, "figure", rr.table_number(f.id), f.page),
                       task_category="Result Analysis", finegrained_task_category="Logging, Analysis & Presentation",
                       extra={"figure": f.id, "output": f"figures/{f.id}.png"}) for f in figures]))
        outputs += [(f.id, _name(f.caption, f.id), f"figures/{f.id}.png") for f in figures]
    return groups, outputs


def _cell_leaves(cells: list[rr.CellResult], label: str) -> list[RubricNode]:
    taken: set[str] = set()
    leaves = []
    for cell in cells:
        key = unique_id(f"{cell.table.id}/{slug(cell.row_label)}/{slug(cell.column_label)}", taken)
        who = " (the paper's method)" if cell.ours else ""
        leaves.append(RubricNode(
            f"results/{key}", f"{label}, row '{cell.row_label}'{who}, column '{cell.column_label}': the re-run "
            f"reproduces the paper's {cell.text}.", 2 if cell.ours else 1,
            task_category="Result Analysis", finegrained_task_category="Evaluation, Metrics & Benchmarking",
            extra={"metric": key, "expected": cell.value, "tolerance": cell.tolerance}))
    return leaves


def _text_leaf(result: rr.TextResult, index: int) -> RubricNode:
    key = f"text/{index}"
    return RubricNode(
        f"results/{key}", f"The re-run reproduces {result.text} from the sentence \"{result.sentence[:200]}\" "
        f"(section '{result.section}').", 1, task_category="Result Analysis",
        finegrained_task_category="Evaluation, Metrics & Benchmarking",
        extra={"metric": key, "expected": result.value,
               "tolerance": rr.cell_tolerance(result.text, result.value, [])})


def _name(caption: str, fallback: str) -> str:
    """A caption usable inside a sentence (no trailing period)."""
    return caption.rstrip(". ") or fallback


# --- the model step, in pieces --------------------------------------------------------------------------------

PIECE_PROMPT = (
    "You write grading-rubric leaves for reproducing an ML paper (PaperBench style).\n"
    "Paper: \"{title}\". Below is {part} of its section \"{section}\".\n"
    "List the concrete things the code of a faithful reproduction must implement for this text: algorithmic steps, "
    "model components, losses, data processing, evaluation metrics. One sentence each, starting with \"The code\". "
    "No hyper-parameter values, no equation numbers, nothing the text does not say.\n"
    "Reply with only a JSON list of at most {max_leaves} items: "
    "[{{\"requirements\": \"The code ...\", \"weight\": 1}}] (weight 1-3 by importance).\n\nTEXT:\n"
)


@dataclass(frozen=True)
class Piece:
    section: Section
    part: str
    text: str

    def prompt(self, title: str) -> str:
        return PIECE_PROMPT.format(title=title[:200], part=self.part, section=self.section.title[:120],
                                   max_leaves=MAX_MODEL_LEAVES) + self.text


def pieces(bundle: Bundle, text_chars: int) -> list[Piece]:
    """Each method section's text cut (at sentence ends) into parts of at most `text_chars` characters."""
    out: list[Piece] = []
    for section in method_sections(bundle) + setup_sections(bundle):
        chunks: list[str] = []
        for sentence in sentences(section.text):
            if chunks and len(chunks[-1]) + len(sentence) + 1 <= text_chars:
                chunks[-1] += " " + sentence
            else:
                chunks.append(sentence[:text_chars])
        chunks = [c for c in chunks if len(c) >= min(MIN_PIECE_CHARS, len(section.text))]
        out += [Piece(section, "all" if len(chunks) == 1 else f"part {i + 1} of {len(chunks)}", chunk)
                for i, chunk in enumerate(chunks)]
    return out[:MAX_PIECES]


def parse_piece_reply(reply: str) -> list[tuple[str, int]]:
    """(requirement, weight) items of a reply; raises ValueError saying what is wrong."""
    items = first_json(reply, "[")
    if not isinstance(items, list):
        raise ValueError(f"no JSON list in the reply: {reply.strip()[:120]!r}")
    found = []
    for item in items:
        text = item.get("requirements") if isinstance(item, dict) else None
        if not isinstance(text, str) or len(text.strip()) < 15:
            continue
        weight = item.get("weight", 1)
        weight = int(weight) if isinstance(weight, (int, float)) and not isinstance(weight, bool) else 1
        found.append((" ".join(text.split())[:400], min(3, max(1, weight))))
    if not found:
        raise ValueError(f"the reply's list holds no usable requirement: {reply.strip()[:120]!r}")
    return found[:MAX_MODEL_LEAVES]


def _ask_piece(ask: Ask, title: str, piece: Piece) -> tuple[Piece, list[tuple[str, int]] | str]:
    try:
        return piece, parse_piece_reply(ask(piece.prompt(title), []))
    except ValueError as exc:
        return piece, str(exc)
    except Exception as exc:  # noqa: BLE001 - a failing call (dead endpoint, context overflow) keeps the draft leaf
        return piece, f"model call failed: {exc!r}"[:300]


def generate_rubric(bundle: Bundle, ask: Ask | None, max_prompt_chars: int | None = None,
                    max_workers: int = MAX_WORKERS) -> RubricResult:
    """The draft with its method leaves written by the model where it answered usefully (see module docstring).
    `max_prompt_chars`: what one prompt may hold on the served model (see `asker.prompt_budget`)."""
    draft = fallback_rubric(bundle)
    if ask is None:
        return RubricResult(draft, "fallback", ["no model given"])
    instructions = len(Piece(Section("x" * 120, 0, ""), "part 10 of 10", "").prompt(bundle.title))
    text_chars = min(MAX_PIECE_CHARS, (max_prompt_chars if max_prompt_chars is not None else 10**9) - instructions)
    if text_chars < MIN_PIECE_CHARS:
        return RubricResult(draft, "fallback", [
            f"the model's prompt budget ({max_prompt_chars} characters) leaves {max(text_chars, 0)} characters of "
            f"paper text after the {instructions}-character instructions; at least {MIN_PIECE_CHARS} are needed"])
    todo = pieces(bundle, text_chars)
    if not todo:
        return RubricResult(draft, "fallback", ["the paper has no method section text to ask about"])
    with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
        answers = list(pool.map(lambda p: _ask_piece(ask, bundle.title, p), todo))
    problems = [f"section '{p.section.title}' ({p.part}): {a}" for p, a in answers if isinstance(a, str)]
    written: dict[str, list[tuple[str, int]]] = {p.section.title: [] for p, a in answers if not isinstance(a, str)}
    for piece, answer in answers:
        if not isinstance(answer, str):
            written[piece.section.title] += answer
    if not written:
        return RubricResult(draft, "fallback", problems, len(todo))
    return RubricResult(_with_model_leaves(draft, bundle, written), "model", problems, len(todo))


def _with_model_leaves(draft: RubricNode, bundle: Bundle, written: dict[str, list[tuple[str, int]]]) -> RubricNode:
    """The draft with each answered section's generic leaf replaced by a node of the model's leaves."""
    code = next(c for c in draft.sub_tasks if c.id == "code")
    sections = method_sections(bundle) + setup_sections(bundle)
    titles = {leaf.id: s.title for s, leaf in zip(sections, code.sub_tasks, strict=False)}
    replaced = []
    for leaf in code.sub_tasks:
        items = written.get(titles.get(leaf.id, ""), [])
        if not items:
            replaced.append(leaf)
            continue
        replaced.append(RubricNode(leaf.id, leaf.requirements, len(items), [
            RubricNode(f"{leaf.id}/{i + 1}", text, weight, task_category="Code Development",
                       finegrained_task_category=leaf.finegrained_task_category)
            for i, (text, weight) in enumerate(items)]))
    code.sub_tasks = replaced
    return draft
