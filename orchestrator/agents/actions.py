"""What the producer can do, and how a model reply becomes actions.

Accepted in order: native tool calls; text actions (```bash blocks, ```write PATH blocks, a `DONE:` line);
a bare fenced code block as the new content of the task's main file (which also submits the work)."""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TOOL_SCHEMAS: list[dict[str, Any]] = [
    {"type": "function", "function": {
        "name": "list_files", "description": "List files under a workspace directory (recursive, max 500).",
        "parameters": {"type": "object", "properties": {"path": {"type": "string", "default": "."}}}}},
    {"type": "function", "function": {
        "name": "read_file", "description": "Read a workspace file (optionally a line range, 1-based inclusive).",
        "parameters": {"type": "object", "required": ["path"], "properties": {
            "path": {"type": "string"}, "start": {"type": "integer"}, "end": {"type": "integer"}}}}},
    {"type": "function", "function": {
        "name": "write_file", "description": "Create or overwrite a workspace file with the given content.",
        "parameters": {"type": "object", "required": ["path", "content"], "properties": {
            "path": {"type": "string"}, "content": {"type": "string"}}}}},
    {"type": "function", "function": {
        "name": "edit_file", "description": "Replace one exact, unique occurrence of old with new in a file.",
        "parameters": {"type": "object", "required": ["path", "old", "new"], "properties": {
            "path": {"type": "string"}, "old": {"type": "string"}, "new": {"type": "string"}}}}},
    {"type": "function", "function": {
        "name": "run", "description": "Run a bash command in the sandbox (cwd /work, no network).",
        "parameters": {"type": "object", "required": ["command"], "properties": {
            "command": {"type": "string"}, "timeout_s": {"type": "number"}}}}},
    {"type": "function", "function": {
        "name": "done", "description": "Declare the work finished; the verifier checks the committed workspace.",
        "parameters": {"type": "object", "required": ["summary"], "properties": {"summary": {"type": "string"}}}}},
]

TOOL_NAMES = {t["function"]["name"] for t in TOOL_SCHEMAS}

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
"""A fenced block: opening and closing fences at the start of a line (inline ``` in prose is not a block)."""
_DONE = re.compile(r"^\s*DONE\b:?\s*(.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Action:
    """One thing the producer asked for. `call_id` is set for native tool calls (answered by a ToolMessage)."""

    tool: str
    args: dict[str, Any] = field(default_factory=dict)
    call_id: str | None = None


def from_tool_calls(tool_calls: Sequence[Mapping[str, Any]]) -> list[Action]:
    return [Action(tool=c["name"], args=dict(c.get("args") or {}), call_id=c.get("id") or f"call_{i}")
            for i, c in enumerate(tool_calls)]


def from_text(text: str, main_file: str | None) -> list[Action]:
    """Text actions in the order they appear; a bare code block becomes write(main_file) + done."""
    actions: list[Action] = []
    bare: list[str] = []
    for match in _FENCE.finditer(text):
        info, body = match.group(1).strip(), match.group(2)
        word, _, rest = info.partition(" ")
        if word in ("bash", "sh", "shell", "console"):
            command = "\n".join(line[2:] if line.startswith("$ ") else line for line in body.splitlines()).strip()
            if command:
                actions.append(Action("run", {"command": command}))
        elif word == "write" and re.fullmatch(r"[\w./-]+", rest.strip()):
            actions.append(Action("write_file", {"path": rest.strip(), "content": body}))
        elif body.strip():
            bare.append(body)
    outside = _FENCE.sub("", text)
    done = _DONE.search(outside)
    if not actions and bare and main_file:
        # Weak models answer with the code itself: take the longest block as the main file and submit it.
        actions.append(Action("write_file", {"path": main_file, "content": max(bare, key=len)}))
        actions.append(Action("done", {"summary": "submitted the code block as " + main_file}))
    elif done:
        actions.append(Action("done", {"summary": done.group(1).strip() or "done"}))
    return actions


def parse_reply(tool_calls: Sequence[Mapping[str, Any]], text: str, main_file: str | None) -> list[Action]:
    """Native tool calls win; otherwise text actions."""
    if tool_calls:
        return from_tool_calls(tool_calls)
    return from_text(text, main_file)
