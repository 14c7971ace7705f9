"""Budgets and stuck detection: pure functions over the small numbers kept in graph state."""
from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from orchestrator.config import BudgetLimits


def exhausted(limits: BudgetLimits, used: Mapping[str, float], iterations_done: int) -> str | None:
    """The stop reason of the first budget reached, else None."""
    if iterations_done >= limits.max_iterations:
        return f"budget_iterations ({iterations_done}/{limits.max_iterations} iterations)"
    if used["tokens"] >= limits.max_tokens:
        return f"budget_tokens ({int(used['tokens'])}/{limits.max_tokens} tokens)"
    if used["elapsed_s"] >= limits.max_hours * 3600:
        return f"budget_time ({used['elapsed_s'] / 3600:.2f}/{limits.max_hours} h)"
    return None


_VOLATILE = re.compile(r"0x[0-9a-f]+|\d+(\.\d+)?|/tmp/\S+")


def failure_signature(verdict: str, summary: str, findings: list[str]) -> str:
    """Equal for 'the same error again': numbers, addresses and temp paths are masked before hashing."""
    text = _VOLATILE.sub("#", (summary + "\n" + "\n".join(findings)).lower())
    # surrogatepass: a finding may name a file whose bytes are not UTF-8, or carry a model's lone surrogate
    return hashlib.sha1(f"{verdict}|{text}".encode("utf-8", "surrogatepass")).hexdigest()[:12]


def is_stuck(history: list[str], patience: int) -> bool:
    """The last `patience` entries are identical (same failure, or same unchanged tree)."""
    return len(history) >= patience and len(set(history[-patience:])) == 1


def push(history: list[str], item: str, keep: int) -> list[str]:
    """Bounded history: state must not grow with the run's length."""
    return (history + [item])[-keep:]
