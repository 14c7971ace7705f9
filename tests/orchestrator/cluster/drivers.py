"""Scripted models that cluster workers import by name ("module:attribute" travels, not the object)."""
from __future__ import annotations

from tests.orchestrator.support import PolicyChatModel, Script, fix_after

GOOD = "def add(a, b):\n    return a + b\n"
BAD = "def add(a, b):\n    return a - b\n"


def _fixer(attempts: int):
    def models(role, endpoint, thinking, max_tokens=None):
        if role == "producer":
            return PolicyChatModel(messages=iter(()), policy=fix_after(attempts, GOOD, BAD))
        return Script().factory()(role, endpoint, thinking)
    return models


fix_after_2 = _fixer(2)
"""Fails twice, passes in iteration 3."""
fix_after_6 = _fixer(6)
"""Fails six times, passes in iteration 7 (long enough to be killed mid-run)."""


def _slow(models, latency_s: float):
    """The same replies after `latency_s` of waiting, as on a busy shared endpoint (the benchmark's model time)."""
    import time

    def slow(role, endpoint, thinking, max_tokens=None):
        time.sleep(latency_s)
        return models(role, endpoint, thinking, max_tokens)
    return slow


fix_after_2_latency_2s = _slow(fix_after_2, 2.0)
"""fix_after_2 with 2 s per model call."""
