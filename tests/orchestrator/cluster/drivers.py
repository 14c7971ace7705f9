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
