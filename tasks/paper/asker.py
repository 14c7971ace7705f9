"""Adapting a chat model to the `(prompt, image paths) -> text` shape that rubric generation and grading use (the
same shape as `tasks.base.Judge`), and the prompt budget a served context leaves, for callers outside a run such as
`m3lab paper rubric`."""
from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Ask = Callable[[str, Sequence[Path]], str]
CHARS_PER_TOKEN = 3
"""Conservative (code, JSON and numbers tokenize densely), as the run spine's packing assumes."""
SAFETY_TOKENS = 256
DEFAULT_CONTEXT_TOKENS = 32_768


@dataclass(frozen=True)
class PromptBudget:
    """How much one call may send and receive on a server with `context_tokens` of context."""

    context_tokens: int
    reply_tokens: int

    @property
    def prompt_tokens(self) -> int:
        return self.context_tokens - self.reply_tokens - SAFETY_TOKENS

    @property
    def prompt_chars(self) -> int:
        return self.prompt_tokens * CHARS_PER_TOKEN


def prompt_budget(context_tokens: int | None, max_reply_tokens: int) -> PromptBudget:
    """The reply gets at most a quarter of the context (the run spine's rule), so a small server (the embedded
    model serves 4K tokens) still leaves three quarters for the prompt whatever the configured completion size."""
    context = context_tokens or DEFAULT_CONTEXT_TOKENS
    return PromptBudget(context, max(64, min(max_reply_tokens, context // 4)))


def chat_asker(model: Any, vision: bool = False) -> Ask:
    """Ask `model` one question; images go along as data URLs only when the model takes images. Thread-safe
    (LangChain chat models may be invoked from several threads), so callers may ask concurrently."""
    from langchain_core.messages import HumanMessage

    def ask(prompt: str, images: Sequence[Path] = ()) -> str:
        content: list[str | dict[str, Any]] = [{"type": "text", "text": prompt}]
        if vision:
            for path in images:
                data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
                content.append({"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}})
        reply = model.invoke([HumanMessage(content=content if len(content) > 1 else prompt)])
        return reply.content if isinstance(reply.content, str) else str(reply.content)

    return ask


def endpoint_asker(endpoint: Any, max_reply_tokens: int | None = None) -> tuple[Ask, PromptBudget]:
    """An asker on a served endpoint whose completion size fits its context (and `max_reply_tokens`, for callers
    whose replies are short: a small model otherwise rambles up to the cap), and the prompt budget that leaves.
    Raises serving.client.EndpointUnavailable when the server does not answer."""
    from serving.client import context_length, make_chat_model

    cap = min(endpoint.max_tokens, max_reply_tokens or endpoint.max_tokens)
    budget = prompt_budget(context_length(endpoint), cap)
    return chat_asker(make_chat_model(endpoint, max_tokens=budget.reply_tokens), vision=endpoint.vision), budget


def first_json(reply: str, opener: str) -> object | None:
    """The first JSON value starting at an `opener` ("[" or "{") in a reply, ignoring text around it (models add
    prose and trailing remarks); None when there is none."""
    decoder = json.JSONDecoder()
    start = reply.find(opener)
    while start != -1:
        try:
            return decoder.raw_decode(reply, start)[0]
        except json.JSONDecodeError:
            start = reply.find(opener, start + 1)
    return None
