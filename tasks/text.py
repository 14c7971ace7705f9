"""Cutting text for people and models: whole lines and whole words only (a finding cut mid-word reads as noise)."""
from __future__ import annotations

import textwrap


def shorten(text: str, width: int) -> str:
    """One line of at most `width` characters, cut between words (never mid-word), ending in '…' when cut."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    return textwrap.shorten(flat, width, placeholder=" …") or flat[:width - 1] + "…"


def clip_tail(text: str, max_chars: int) -> str:
    """The last whole lines of `text` that fit in `max_chars` (a longer last line is shortened between words)."""
    lines = text.rstrip().splitlines()
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        if size + len(line) + 1 > max_chars:
            if not kept:
                kept.append(shorten(line, max_chars))
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(reversed(kept))
