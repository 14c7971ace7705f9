"""Cutting text for people and models: whole lines and whole words only (a finding cut mid-word reads as noise)."""
from __future__ import annotations

import re
import textwrap

_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


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


def printable(text: str) -> str:
    """`text` safe to print on a terminal: control characters (ESC, and with it every CSI/OSC sequence; CR, BEL,
    C1 codes, bidirectional overrides, lone surrogates) are shown as escapes like `\\x1b`. Text a sandbox or a
    model wrote can then never move the cursor, rewrite lines, set the title or the clipboard, or make links.
    Tabs and newlines are kept."""
    return _UNPRINTABLE.sub(lambda m: repr(m.group())[1:-1], text)


_MD_SPECIAL = re.compile(r"([\\|\[\]<>`])")


def md_inline(text: str, width: int | None = None) -> str:
    """`text` as one line of Markdown (a table cell, a list item) that renders as the text itself: no link,
    image, HTML or code span it could open, no `|` that ends a cell, no line that starts a new block."""
    flat = shorten(text, width) if width else " ".join(text.split())
    return _MD_SPECIAL.sub(r"\\\1", printable(flat))


def md_fenced(text: str, info: str = "text") -> list[str]:
    """Lines of a fenced Markdown block holding `text` verbatim: its fence is longer than any run of `~` in the
    text, so no line of it can close the block early."""
    runs = re.findall(r"~+", text)
    fence = "~" * max(3, 1 + max(map(len, runs), default=0))
    return [fence + info, printable(text), fence]
