"""Asking the judge about the leaves no rule can decide: in batches that share their evidence, sent concurrently.

Leaves are grouped by the evidence they are judged on (code, the run's log, the result files), in rubric order so a
section's leaves travel together; the shared evidence is sent once per batch, cut so the whole prompt fits the
judge's context, and the reply grades every leaf of the batch by id. Figure leaves travel a few at a time with their
images. A leaf the reply does not grade is asked once more (with the other missing leaves of its batch); still
missing or unparsable, it scores 0 — never a pass. `max_batch_leaves=1` judges leaf by leaf (one call each)."""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.paper.asker import first_json
from tasks.paper.evidence import Evidence, evidence_text, figure_images, kind_of
from tasks.paper.rubric import RubricNode

Judge = Callable[[str, Sequence[Path]], str]
Verdict = tuple[float, str]

DEFAULT_PROMPT_CHARS = 24_000
"""About 8K tokens: what a judge prompt may hold when the caller does not say (the run passes its server's)."""
MAX_BATCH_LEAVES = 20
"""About 40 reply tokens a leaf: 20 leaves fit the reply budget of the embedded 4K-token model (1K tokens)."""
MAX_FIGURES_PER_BATCH = 3
MAX_JUDGE_WORKERS = 4
EVIDENCE_SHARE = 0.6
"""Of a batch prompt's characters, the most the shared evidence may take; the requirements get the rest."""
QUESTIONS = {
    "code": "Does the repository contain actual code that correctly implements it (a description or a plan is not "
            "enough)?",
    "execution": "Did running reproduce.sh actually execute it successfully?",
    "results": "Do the files written by the re-run show evidence that agrees with it?",
}
RULES = ("Be strict: reward only what the evidence shows; hard-coded results, numbers copied from the paper, or code "
         "that does not do what the requirement says earn 0.")


@dataclass
class Batch:
    kind: str
    leaves: list[RubricNode]
    images: list[Path] = field(default_factory=list)

    def prompt(self, evidence: str) -> str:
        lines = [f"[{i + 1}] (id: {leaf.id}) {leaf.requirements}" for i, leaf in enumerate(self.leaves)]
        images = ("\nIMAGES: for each figure requirement in order, first the paper's figure, then the reproduced "
                  "one.\n" if self.images else "")
        return (f"You grade requirements of a paper reproduction. {RULES}\n"
                f"For each requirement: {QUESTIONS[self.kind]}\n\n{evidence}\n{images}\n"
                "REQUIREMENTS:\n" + "\n".join(lines) + "\n\n"
                'Reply with only JSON: {"grades": [{"id": "<id>", "score": 0 or 1, "explanation": "<one short '
                'sentence>"}, ...]} with one entry for every id above.')


def single_prompt(leaf: RubricNode, evidence: str, has_images: bool) -> str:
    """The leaf-by-leaf prompt (the reference the batches are measured against)."""
    images = "\nIMAGES: first the paper's figure, then the reproduced one." if has_images else ""
    return (f"You grade one requirement of a paper reproduction. {RULES}\n"
            f"REQUIREMENT ({leaf.task_category}): {leaf.requirements}\n"
            f"{QUESTIONS[kind_of(leaf.task_category or '')]}\n\n{evidence}{images}\n\n"
            'Reply with only JSON: {"score": 0 or 1, "explanation": "<one or two sentences>"}')


def make_batches(leaves: list[RubricNode], ev: Evidence, prompt_chars: int, max_batch_leaves: int) -> list[Batch]:
    """Leaves of one evidence kind, in rubric order, cut into batches whose requirement lines fit beside the
    evidence; figure leaves a few at a time with their images."""
    room = int(prompt_chars * (1 - EVIDENCE_SHARE)) - 600
    batches: list[Batch] = []
    open_batch: dict[str, Batch] = {}
    for leaf in leaves:
        kind = kind_of(leaf.task_category or "")
        is_figure = "figure" in leaf.extra
        key = f"{kind}/figure" if is_figure else kind
        current = open_batch.get(key)
        limit = min(max_batch_leaves, MAX_FIGURES_PER_BATCH) if is_figure else max_batch_leaves
        used = sum(len(x.requirements) + len(x.id) + 12 for x in current.leaves) if current else 0
        if current is None or len(current.leaves) >= limit or used + len(leaf.requirements) + len(leaf.id) + 12 > room:
            current = open_batch[key] = Batch(kind, [])
            batches.append(current)
        current.leaves.append(leaf)
        if is_figure:
            current.images += figure_images(leaf.extra, ev)
    return batches


def parse_batch_reply(reply: str, batch: Batch) -> dict[str, Verdict]:
    """Verdicts by leaf id from a batch reply (an object with "grades", or a bare list); entries may name the
    leaf by its id or by its [number]. Entries that do not parse are left out (the caller scores them 0)."""
    data: Any = first_json(reply, "{")
    if not isinstance(data, dict) or "grades" not in data:
        data = first_json(reply, "[")
    entries = data.get("grades") if isinstance(data, dict) else data
    by_number = {str(i + 1): leaf.id for i, leaf in enumerate(batch.leaves)}
    ids = {leaf.id for leaf in batch.leaves}
    found: dict[str, Verdict] = {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        raw = str(entry.get("id", "")).strip().strip("[]")
        leaf_id = raw if raw in ids else by_number.get(raw)
        score = entry.get("score")
        if leaf_id and isinstance(score, (int, float)) and not isinstance(score, bool) and 0 <= score <= 1:
            found[leaf_id] = (float(score), str(entry.get("explanation", "")).strip() or "(no explanation)")
    return found


def parse_judge_reply(reply: str) -> Verdict:
    """(score, explanation) of a leaf-by-leaf reply; anything unparsable is a 0, never a pass."""
    match = re.search(r"\{.*\}", reply, re.DOTALL)
    if match:
        try:
            data = json.loads(match.group(0))
            score = data.get("score") if isinstance(data, dict) else None
            if isinstance(score, (int, float)) and not isinstance(score, bool) and 0 <= score <= 1:
                return float(score), str(data.get("explanation", "")).strip() or "(no explanation)"
        except json.JSONDecodeError:
            pass
    return 0.0, f"unparsable judge reply, scored 0: {reply.strip()[:200]!r}"


def _run_batch(batch: Batch, evidence: str, judge: Judge) -> tuple[dict[str, Verdict], int]:
    """Ask once; ask again for the leaves the reply left out; 0 for what is still missing."""
    verdicts: dict[str, Verdict] = {}
    calls = 0
    last = ""
    todo = batch
    for attempt in range(2):
        calls += 1
        # A judge that raises (endpoint down) propagates: the run pauses rather than grading everything 0.
        reply = last = judge(todo.prompt(evidence), todo.images)
        verdicts.update(parse_batch_reply(reply, todo))
        missing = [leaf for leaf in todo.leaves if leaf.id not in verdicts]
        if not missing:
            break
        images = todo.images if attempt == 0 and len(missing) == len(todo.leaves) else []
        todo = Batch(todo.kind, missing, images)
    for leaf in batch.leaves:
        if leaf.id not in verdicts:
            verdicts[leaf.id] = (0.0, f"the judge's reply did not grade this leaf, scored 0: {last.strip()[:160]!r}")
    return verdicts, calls


def _run_single(leaf: RubricNode, ev: Evidence, judge: Judge, evidence_chars: int) -> tuple[dict[str, Verdict], int]:
    images = figure_images(leaf.extra, ev) if "figure" in leaf.extra else []
    prompt = single_prompt(leaf, evidence_text(kind_of(leaf.task_category or ""), ev, evidence_chars), bool(images))
    return {leaf.id: parse_judge_reply(judge(prompt, images))}, 1


def judge_leaves(leaves: list[RubricNode], ev: Evidence, judge: Judge, prompt_chars: int,
                 max_batch_leaves: int = MAX_BATCH_LEAVES, max_workers: int = MAX_JUDGE_WORKERS
                 ) -> tuple[dict[str, Verdict], int]:
    """Verdicts of `leaves` and the number of judge calls made."""
    evidence_chars = int(prompt_chars * EVIDENCE_SHARE)
    texts = {kind: evidence_text(kind, ev, evidence_chars) for kind in {kind_of(x.task_category or "") for x in leaves}}
    if max_batch_leaves <= 1:
        jobs = [lambda leaf=leaf: _run_single(leaf, ev, judge, evidence_chars) for leaf in leaves]
    else:
        jobs = [lambda b=b: _run_batch(b, texts[b.kind], judge)
                for b in make_batches(leaves, ev, prompt_chars, max_batch_leaves)]
    verdicts: dict[str, Verdict] = {}
    calls = 0
    with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
        for found, n in pool.map(lambda job: job(), jobs):
            verdicts.update(found)
            calls += n
    return verdicts, calls
