"""The producer's conversation: kept in a JSONL file (never in graph state); `orchestrator/tokens.py` packs it
to the model's context.

The graph state holds only the context epoch and how many messages were committed at the last checkpoint; a
resume truncates anything an interrupted step appended after that, so replays stay consistent."""
from __future__ import annotations

import json
from pathlib import Path

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage, messages_from_dict, messages_to_dict

from orchestrator.tokens import message_tokens


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
        self.sizes = [message_tokens(m) for m in self.messages]
        """Token estimate per message, computed once: packing a long conversation must not re-measure it."""

    def _rewrite(self) -> None:
        self.path.write_text("".join(json.dumps(d) + "\n" for d in messages_to_dict(self.messages)),
                             encoding="utf-8")

    def add(self, *messages: BaseMessage) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            for d in messages_to_dict(list(messages)):
                f.write(json.dumps(d) + "\n")
        self.messages.extend(messages)
        self.sizes.extend(message_tokens(m) for m in messages)

    def __len__(self) -> int:
        return len(self.messages)


def system_and_task(system: str, task: str) -> list[BaseMessage]:
    return [SystemMessage(content=system), HumanMessage(content=task)]
