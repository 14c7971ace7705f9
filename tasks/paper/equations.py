"""Displayed equations: the raw text PyMuPDF reads (it cannot give LaTeX) and a PNG crop a vision model can read."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from tasks.paper.bundle import Equation
from tasks.paper.layout import Line, equation_number_for, looks_like_equation

if TYPE_CHECKING:
    import pymupdf

MARGIN_PT = 3.0
RENDER_DPI = 200


def extract_equations(page: "pymupdf.Page", lines: Sequence[Line], out_dir: Path,
                      first_index: int) -> tuple[list[Equation], set[int]]:
    """Equations of one page and the ids (`id(line)`) of the lines they consumed."""
    import pymupdf

    equations: list[Equation] = []
    used: set[int] = set()
    for line in lines:
        if id(line) in used or not looks_like_equation(line):
            continue
        label = equation_number_for(line, lines)
        rect = pymupdf.Rect(line.bbox)
        if label is not None:
            rect |= pymupdf.Rect(label.bbox)
            used.add(id(label))
        used.add(id(line))
        number = label.text.strip("()") if label is not None else None
        eq_id = f"eq_{number or first_index + len(equations)}"
        rel = f"equations/{eq_id}.png"
        (out_dir / "equations").mkdir(parents=True, exist_ok=True)
        clip = (rect + (-MARGIN_PT, -MARGIN_PT, MARGIN_PT, MARGIN_PT)) & page.rect
        page.get_pixmap(clip=clip, dpi=RENDER_DPI).save(out_dir / rel)
        equations.append(Equation(eq_id, page.number, tuple(round(v, 2) for v in rect), line.text, number, rel))
    return equations, used
