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


def ask_endpoint(base_url: str, store_url: str, limit: int, calls: int, start_at: float) -> int:
    """`calls` chat requests to `base_url` through the run spine's request slot (cluster-wide with a store URL,
    this process's own without), starting at wall time `start_at` so that every worker asks at once."""
    import time

    from langchain_core.messages import HumanMessage

    from orchestrator.store import StoreSettings
    from orchestrator.store.slots import request_slot
    from serving.client import ModelEndpoint, invoke_with_retry, make_chat_model

    endpoint = ModelEndpoint(base_url=base_url, max_concurrency=limit, retry_for_s=30.0)
    store = StoreSettings(url=store_url)
    time.sleep(max(0.0, start_at - time.time()))
    for _ in range(calls):
        invoke_with_retry(lambda: make_chat_model(endpoint), [HumanMessage("hi")], endpoint.retry_for_s,
                          slot=request_slot(endpoint, store))
    return calls
