"""A scripted judge for the grading tests: it reads the leaf-by-leaf prompt and the batch prompt alike, and decides
each requirement with a given function of (requirement, evidence), so batched and leaf-by-leaf grading can be
compared verdict for verdict."""
from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

Decide = Callable[[str, str], tuple[int, str]]
BATCH_LINE = re.compile(r"^\[(\d+)\] \(id: (.+?)\) (.*)$", re.MULTILINE)
SINGLE_LINE = re.compile(r"^REQUIREMENT \((.*?)\): (.*)$", re.MULTILINE)


def always(score: int, explanation: str = "scripted") -> Decide:
    return lambda requirement, evidence: (score, explanation)


class ScriptedJudge:
    """Records every call (prompt, images); `drop` ids are left out of batch replies (a judge that forgets)."""

    def __init__(self, decide: Decide, drop: Sequence[str] = (), garbage: bool = False) -> None:
        self.decide, self.drop, self.garbage = decide, set(drop), garbage
        self.calls: list[tuple[str, list[Path]]] = []
        self._lock = threading.Lock()

    def __call__(self, prompt: str, images: Sequence[Path] = ()) -> str:
        with self._lock:
            self.calls.append((prompt, list(images)))
        if self.garbage:
            return "I think it all looks fine. PASS"
        batch = BATCH_LINE.findall(prompt)
        if batch:
            evidence = prompt.split("REQUIREMENTS:")[0]
            grades = []
            for _, leaf_id, requirement in batch:
                if leaf_id in self.drop:
                    continue
                score, why = self.decide(requirement, evidence)
                grades.append({"id": leaf_id, "score": score, "explanation": why})
            return "Here you go:\n" + json.dumps({"grades": grades})
        match = SINGLE_LINE.search(prompt)
        assert match, f"unrecognised judge prompt: {prompt[:200]!r}"
        score, why = self.decide(match.group(2), prompt[match.end():])
        return json.dumps({"score": score, "explanation": why})
