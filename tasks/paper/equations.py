"""Displayed equations: the raw text PyMuPDF reads (it cannot give LaTeX) and a PNG crop a vision model can read.

A displayed equation is a run of consecutive math lines in reading order (a fraction is three lines: numerator,
the "a =" row with its "(1)" label, denominator), grouped while they stay in one column and close together."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.paper.bundle import Equation, rounded_box, unique_id
from tasks.paper.layout import EQUATION_NUMBER, Line, equation_number_for, looks_like_equation

if TYPE_CHECKING:
    import pymupdf

MARGIN_PT = 3.0
RENDER_DPI = 200
GROUP_GAP_FACTOR = 0.8
"""Lines at most this many font sizes apart vertically belong to one equation."""


def _groups(lines: Sequence[Line]) -> list[list[Line]]:
    """Runs of consecutive, close math lines in one column; a new "(n)" label starts a new equation."""
    groups: list[list[Line]] = []
    labels: list[Line | None] = []
    position = {id(ln): i for i, ln in enumerate(lines)}  # list.index compares dataclasses field by field: slow
    numbers = [ln for ln in lines if EQUATION_NUMBER.match(ln.text.strip())]
    for line in lines:
        if not looks_like_equation(line):
            continue
        label = equation_number_for(line, numbers)
        last = groups[-1][-1] if groups else None
        close = last is not None and last.column == line.column and position[id(line)] - position[id(last)] <= 2 \
            and line.bbox[1] - last.bbox[3] <= GROUP_GAP_FACTOR * line.size
        if close and not (label is not None and labels[-1] is not None and label is not labels[-1]):
            groups[-1].append(line)
            labels[-1] = labels[-1] or label
        else:
            groups.append([line])
            labels.append(label)
    return groups


def _is_display(group: Sequence[Line], label: Line | None) -> bool:
    """A labelled formula, several math lines, or one line with a relation; not a stray inline symbol."""
    return label is not None or len(group) >= 2 or any("=" in ln.text or "≤" in ln.text for ln in group)


def extract_equations(page: pymupdf.Page, lines: Sequence[Line], out_dir: Path,
                      taken: set[str]) -> tuple[dict[int, Equation], set[int]]:
    """Equations of one page keyed by `id()` of their first line, and the ids of every line they consumed."""
    import pymupdf

    found: dict[int, Equation] = {}
    used: set[int] = set()
    numbers = [ln for ln in lines if EQUATION_NUMBER.match(ln.text.strip())]
    display = None  # the page's display list, built once for all its crops
    for group in _groups(list(lines)):
        label = next((lab for ln in group if (lab := equation_number_for(ln, numbers)) is not None), None)
        if not _is_display(group, label):
            continue
        rect = pymupdf.Rect(group[0].bbox)
        for line in group[1:] + ([label] if label is not None else []):
            rect |= pymupdf.Rect(line.bbox)
        used.update(id(ln) for ln in group)
        if label is not None:
            used.add(id(label))
        number = label.text.strip("()") if label is not None else None
        eq_id = unique_id(f"eq_{number}" if number else "eq_unnumbered", taken)
        rel = f"equations/{eq_id}.png"
        (out_dir / "equations").mkdir(parents=True, exist_ok=True)
        clip = (rect + (-MARGIN_PT, -MARGIN_PT, MARGIN_PT, MARGIN_PT)) & page.rect
        display = display or page.get_displaylist()
        display.get_pixmap(matrix=pymupdf.Matrix(RENDER_DPI / 72, RENDER_DPI / 72), clip=clip).save(out_dir / rel)
        text = " ".join(ln.text for ln in sorted(group, key=lambda ln: (ln.bbox[1], ln.bbox[0])))
        box = rounded_box(rect.x0, rect.y0, rect.x1, rect.y1)
        found[id(group[0])] = Equation(eq_id, page.number, box, text, number, rel)
    return found, used


__all__ = ["extract_equations", "EQUATION_NUMBER"]
