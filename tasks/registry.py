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
    """Rebuild a task from the parameters stored in run.json; a kind whose stored form changed over time reads the
    older forms in its own `from_params`."""
    cls = task_class(kind)
    from_params = getattr(cls, "from_params", None)
    return from_params(dict(params)) if from_params is not None else cls(**dict(params))
