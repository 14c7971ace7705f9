"""Tokens: what a model call used (`Usage`), estimates from text, and packing a message list into a budget.

Outside `agents/` because the runtime packs every prompt and measures every reply, and agents import the runtime
(never the other way round)."""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

CHARS_PER_TOKEN = 3.0
"""Conservative estimate (code and JSON tokenize densely); the server rejects prompts that are too long."""
TRIM_MIN_TOKENS = 64
"""Observations shorter than this are not worth trimming (the note replacing them is about as long)."""


@dataclass(frozen=True)
class Usage:
    """Tokens of one or more model calls; `a + b` adds them (`sum(usages, Usage())`)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False
    """Some of it was estimated from text: the server (or a test double) reported none."""

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens,
                     self.reasoning_tokens + other.reasoning_tokens, self.estimated or other.estimated)

    def to_json(self) -> dict[str, int]:
        """The journal's shape (`tokens` of a verdict, the planner's usage)."""
        return {"prompt": self.prompt_tokens, "completion": self.completion_tokens,
                "reasoning": self.reasoning_tokens}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Usage:
        return cls(int(d.get("prompt", 0)), int(d.get("completion", 0)), int(d.get("reasoning", 0)))


def usage_of(reply: AIMessage, prompt: Sequence[BaseMessage]) -> Usage:
    """Token use reported by the server; estimated from text when a server (or a test double) reports none."""
    meta = getattr(reply, "usage_metadata", None)
    if meta:
        details = meta.get("output_token_details") or {}
        return Usage(int(meta.get("input_tokens", 0)), int(meta.get("output_tokens", 0)),
                     int(details.get("reasoning", 0) or 0), False)
    return Usage(estimate_tokens(prompt), estimate_tokens([reply]), 0, True)


def message_tokens(m: BaseMessage) -> int:
    content = m.content if isinstance(m.content, str) else json.dumps(m.content)
    calls = len(json.dumps(m.tool_calls)) if isinstance(m, AIMessage) and m.tool_calls else 0
    return int((len(content) + calls + 16) / CHARS_PER_TOKEN)


def estimate_tokens(messages: Sequence[BaseMessage]) -> int:
    return sum(message_tokens(m) for m in messages)


def _rounds(messages: list[BaseMessage]) -> list[list[BaseMessage]]:
    """Groups that must be kept or dropped together: an AI message with the answers to its tool calls."""
    rounds: list[list[BaseMessage]] = []
    for m in messages:
        if isinstance(m, AIMessage) or not rounds or not isinstance(m, ToolMessage):
            rounds.append([m])
        else:
            rounds[-1].append(m)
    return rounds


def _trimmed(m: BaseMessage) -> BaseMessage:
    note = f"[output trimmed to fit the context: {len(str(m.content))} chars]"
    if isinstance(m, ToolMessage):
        return ToolMessage(content=note, tool_call_id=m.tool_call_id)
    return HumanMessage(content=note)


def _is_observation(m: BaseMessage) -> bool:
    return isinstance(m, ToolMessage) or (isinstance(m, HumanMessage) and str(m.content).startswith("Observation"))


def pack(messages: list[BaseMessage], max_tokens: int, sizes: Sequence[int] | None = None, keep_head: int = 2,
         keep_tail: int = 6) -> list[BaseMessage]:
    """Fit `messages` into `max_tokens`: first trim the oldest tool outputs, then drop the oldest rounds.
    The head (system prompt and task) and the last `keep_tail` messages are always kept (the head may be cut in
    the middle on a very small context). `sizes` are the messages' cached token estimates."""
    sizes = list(sizes) if sizes is not None else [message_tokens(m) for m in messages]
    if sum(sizes) <= max_tokens:
        return messages
    head = _fit_head(messages[:keep_head], int(max_tokens * 0.7))
    body, body_sizes = list(messages[keep_head:]), sizes[keep_head:]
    total = estimate_tokens(head) + sum(body_sizes)
    for i in range(max(0, len(body) - keep_tail)):
        if total <= max_tokens:
            return head + body
        if body_sizes[i] > TRIM_MIN_TOKENS and _is_observation(body[i]):
            body[i] = _trimmed(body[i])
            total -= body_sizes[i] - (new := message_tokens(body[i]))
            body_sizes[i] = new
    if total <= max_tokens:
        return head + body
    start, dropped = 0, 0
    for group in _round_sizes(body, body_sizes):  # oldest rounds first, never the last one
        if total <= max_tokens or start + group[0] >= len(body):
            break
        start, dropped, total = start + group[0], dropped + group[0], total - group[1]
    note = [HumanMessage(content=f"[{dropped} older messages were dropped to fit the context]")] if dropped else []
    return head + note + body[start:]


def _round_sizes(body: list[BaseMessage], sizes: list[int]) -> list[tuple[int, int]]:
    """(message count, tokens) of each round, oldest first."""
    out: list[tuple[int, int]] = []
    start = 0
    for round_ in _rounds(body):
        out.append((len(round_), sum(sizes[start:start + len(round_)])))
        start += len(round_)
    return out


def _fit_head(head: list[BaseMessage], max_tokens: int) -> list[BaseMessage]:
    """The head is never dropped; on a small-context server its longest parts are cut in the middle."""
    if estimate_tokens(head) <= max_tokens:
        return head
    share = int(max_tokens * CHARS_PER_TOKEN / max(1, len(head)))
    fitted: list[BaseMessage] = []
    for m in head:
        if isinstance(m.content, str) and len(m.content) > share:
            half = share // 2
            m = m.model_copy(update={"content": m.content[:half] + "\n[... cut to fit the context ...]\n"
                                     + m.content[-half:]})
        fitted.append(m)
    return fitted
