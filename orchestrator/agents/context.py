"""The producer's conversation: kept in a JSONL file (never in graph state) and packed to the model's context.

The graph state holds only the file path and how many messages were committed at the last checkpoint; a
resume truncates anything an interrupted step appended after that, so replays stay consistent."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.messages import messages_from_dict, messages_to_dict

CHARS_PER_TOKEN = 3.0
"""Conservative estimate (code and JSON tokenize densely); the server rejects prompts that are too long."""


class Conversation:
    """Append-only message log of one producer context epoch."""

    def __init__(self, path: Path, committed: int):
        self.path = path
        self.messages: list[BaseMessage] = []
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            self.messages = messages_from_dict([json.loads(line) for line in lines[:committed]])
            if len(lines) > committed:  # written by a step that did not reach its checkpoint
                self._rewrite()

    def _rewrite(self) -> None:
        self.path.write_text("".join(json.dumps(d) + "\n" for d in messages_to_dict(self.messages)),
                             encoding="utf-8")

    def add(self, *messages: BaseMessage) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            for d in messages_to_dict(list(messages)):
                f.write(json.dumps(d) + "\n")
        self.messages.extend(messages)

    def __len__(self) -> int:
        return len(self.messages)


def estimate_tokens(messages: Sequence[BaseMessage]) -> int:
    total = 0
    for m in messages:
        content = m.content if isinstance(m.content, str) else json.dumps(m.content)
        total += len(content) + (len(json.dumps(m.tool_calls)) if isinstance(m, AIMessage) else 0) + 16
    return int(total / CHARS_PER_TOKEN)


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


def pack(messages: list[BaseMessage], max_tokens: int, keep_head: int = 2, keep_tail: int = 6) -> list[BaseMessage]:
    """Fit `messages` into `max_tokens`: first trim the oldest tool outputs, then drop the oldest rounds.
    The head (system prompt and task) and the last `keep_tail` messages are always kept whole."""
    if estimate_tokens(messages) <= max_tokens:
        return messages
    head, body = _fit_head(messages[:keep_head], int(max_tokens * 0.7)), list(messages[keep_head:])
    cut = max(0, len(body) - keep_tail)
    for i in range(cut):
        if _is_observation(body[i]):
            body[i] = _trimmed(body[i])
            if estimate_tokens(head + body) <= max_tokens:
                return head + body
    rounds = _rounds(body)
    dropped = 0
    while len(rounds) > 1 and estimate_tokens(head + [m for r in rounds for m in r]) > max_tokens:
        dropped += len(rounds.pop(0))
    note = [HumanMessage(content=f"[{dropped} older messages were dropped to fit the context]")] if dropped else []
    return head + note + [m for r in rounds for m in r]


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


def system_and_task(system: str, task: str) -> list[BaseMessage]:
    return [SystemMessage(content=system), HumanMessage(content=task)]
