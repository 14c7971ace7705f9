"""Task kinds by name (lazy imports: a kind's heavy dependencies load only when it is used)."""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from tasks.base import Task

KINDS: dict[str, str] = {
    "code": "tasks.code.task:CodeTask",
    "kernel": "tasks.kernel.task:KernelTask",
    "paper": "tasks.paper.task:PaperTask",
}


def task_class(kind: str) -> type:
    try:
        module, _, name = KINDS[kind].partition(":")
    except KeyError:
        raise KeyError(f"unknown task kind {kind!r}; known: {', '.join(sorted(KINDS))}") from None
    return getattr(importlib.import_module(module), name)


def build_task(kind: str, params: Mapping[str, Any]) -> Task:
    """Rebuild a task from the parameters stored in run.json."""
    return task_class(kind)(**dict(params))
