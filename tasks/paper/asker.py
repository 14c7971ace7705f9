"""Adapting a LangChain chat model to the `(prompt, image paths) -> text` shape that rubric generation and grading
use (the same shape as `tasks.base.Judge`), for callers outside a run such as `m3lab paper rubric`."""
from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Callable, Sequence

Ask = Callable[[str, Sequence[Path]], str]


def chat_asker(model: Any, vision: bool = False) -> Ask:
    """Ask `model` one question; images go along as data URLs only when the model takes images."""
    from langchain_core.messages import HumanMessage

    def ask(prompt: str, images: Sequence[Path] = ()) -> str:
        content: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
        if vision:
            for path in images:
                data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
                content.append({"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}})
        reply = model.invoke([HumanMessage(content=content if len(content) > 1 else prompt)])
        return reply.content if isinstance(reply.content, str) else str(reply.content)

    return ask
