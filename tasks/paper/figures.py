"""Figures: embedded raster images and clusters of vector drawings, rendered to PNG, each with its caption."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from tasks.paper.bundle import Figure
from tasks.paper.layout import Line, caption_kind

if TYPE_CHECKING:
    import pymupdf

MIN_SIDE_PT = 40.0
"""Smaller images and drawing clusters are logos, rules or glyph decorations, not figures."""
CAPTION_DISTANCE_PT = 60.0
RENDER_DPI = 150


def extract_figures(page: "pymupdf.Page", lines: Sequence[Line], tables: Sequence[tuple[float, ...]],
                    out_dir: Path, first_index: int) -> list[Figure]:
    """Figures of one page (tables' own rulings excluded), written as `figures/<id>.png`."""
    import pymupdf

    regions: list[tuple[str, pymupdf.Rect]] = []
    for info in page.get_image_info():
        rect = pymupdf.Rect(info["bbox"]) & page.rect
        if _big_enough(rect):
            regions.append(("raster", rect))
    for rect in (page.cluster_drawings() if page.get_cdrawings() else []):
        if not _big_enough(rect) or _overlaps(rect, [pymupdf.Rect(t) for t in tables]):
            continue
        if _overlaps(rect, [r for _, r in regions]):
            continue
        regions.append(("vector", rect))
    figures: list[Figure] = []
    for kind, rect in sorted(regions, key=lambda kr: (kr[1].y0, kr[1].x0)):
        caption, number = _caption(rect, lines)
        fig_id = f"figure_{number or first_index + len(figures)}"
        rel = f"figures/{fig_id}.png"
        (out_dir / "figures").mkdir(parents=True, exist_ok=True)
        page.get_pixmap(clip=rect, dpi=RENDER_DPI).save(out_dir / rel)
        bbox = tuple(round(v, 2) for v in rect)
        figures.append(Figure(fig_id, page.number, bbox, kind, caption, rel))
    return figures


def _big_enough(rect: "pymupdf.Rect") -> bool:
    return rect.width >= MIN_SIDE_PT and rect.height >= MIN_SIDE_PT


def _overlaps(rect: "pymupdf.Rect", others: Sequence["pymupdf.Rect"]) -> bool:
    """True when more than half of `rect` lies inside one of `others`."""
    return any((rect & other).get_area() > 0.5 * rect.get_area() for other in others)


def _caption(rect: "pymupdf.Rect", lines: Sequence[Line]) -> tuple[str, str | None]:
    """The nearest "Figure N:" line, preferring below the figure (the usual place)."""
    best: tuple[float, Line] | None = None
    for line in lines:
        kind = caption_kind(line.text)
        if not kind or kind[0] != "figure":
            continue
        if line.bbox[2] < rect.x0 or line.bbox[0] > rect.x1:
            continue
        below = line.bbox[1] - rect.y1
        above = rect.y0 - line.bbox[3]
        gap = below if below >= -2 else above + 10  # a caption above is second choice
        if -2 <= gap <= CAPTION_DISTANCE_PT and (best is None or gap < best[0]):
            best = (gap, line)
    if best is None:
        return "", None
    return best[1].text, caption_kind(best[1].text)[1]
