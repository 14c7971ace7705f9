"""Figures: embedded raster images and clusters of vector drawings, rendered to PNG, each with its caption."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.paper.bundle import Figure, rounded_box, unique_id
from tasks.paper.layout import Line, caption_kind, caption_text

if TYPE_CHECKING:
    import pymupdf

MIN_SIDE_PT = 40.0
"""Smaller images and drawing clusters are logos, rules or glyph decorations, not figures."""
CAPTION_DISTANCE_PT = 60.0
LABEL_REACH_PT = 12.0
"""Short text this close to a vector figure (axis labels, legends) belongs to it."""
LABEL_MAX_CHARS = 40
RENDER_DPI = 150
SCAN_SHARE = 0.5


def extract_figures(page: pymupdf.Page, lines: Sequence[Line], captions: Mapping[int, tuple[str, list[Line]]],
                    tables: Sequence[tuple[float, ...]], out_dir: Path, taken: set[str],
                    scanned: bool = False) -> list[Figure]:
    """Figures of one page (tables' own rulings excluded), written as `figures/<id>.png`; `taken` holds ids.
    On `scanned` pages, an image covering most of the page is the scan itself, not a figure."""
    import pymupdf

    regions: list[tuple[str, pymupdf.Rect]] = []
    for info in page.get_image_info():
        rect = pymupdf.Rect(info["bbox"]) & page.rect
        if _big_enough(rect) and not (scanned and rect.get_area() > SCAN_SHARE * page.rect.get_area()):
            regions.append(("raster", rect))
    # Clustering vector paths is the slow part: only pages with a figure caption can hold a vector figure.
    figure_caption = any((caption_kind(block[1][0].text) or ("",))[0] == "figure" for block in captions.values())
    for rect in (page.cluster_drawings() if figure_caption and page.get_cdrawings() else []):
        if not _big_enough(rect) or _overlaps(rect, [pymupdf.Rect(t) for t in tables]):
            continue
        if _overlaps(rect, [r for _, r in regions]):
            continue
        regions.append(("vector", _with_labels(rect, lines)))
    figures: list[Figure] = []
    for kind, rect in sorted(regions, key=lambda kr: (kr[1].y0, kr[1].x0)):
        caption, number = _caption(rect, lines, captions)
        fig_id = unique_id(f"figure_{number}" if number else "figure_unnumbered", taken)
        rel = f"figures/{fig_id}.png"
        (out_dir / "figures").mkdir(parents=True, exist_ok=True)
        page.get_pixmap(clip=rect, dpi=RENDER_DPI).save(out_dir / rel)
        bbox = rounded_box(rect.x0, rect.y0, rect.x1, rect.y1)
        figures.append(Figure(fig_id, page.number, bbox, kind, caption, rel))
    return figures


def _big_enough(rect: pymupdf.Rect) -> bool:
    return rect.width >= MIN_SIDE_PT and rect.height >= MIN_SIDE_PT


def _overlaps(rect: pymupdf.Rect, others: Sequence[pymupdf.Rect]) -> bool:
    """True when more than half of `rect` lies inside one of `others`."""
    return any((rect & other).get_area() > 0.5 * rect.get_area() for other in others)


def _with_labels(rect: pymupdf.Rect, lines: Sequence[Line]) -> pymupdf.Rect:
    """Grow a drawing cluster by the short text around it (tick and axis labels are text, not drawings)."""
    import pymupdf

    reach = rect + (-LABEL_REACH_PT, -LABEL_REACH_PT, LABEL_REACH_PT, LABEL_REACH_PT)
    grown = pymupdf.Rect(rect)
    for line in lines:
        box = pymupdf.Rect(line.bbox)
        if len(line.text) <= LABEL_MAX_CHARS and not caption_kind(line.text) and box.intersects(reach):
            grown |= box
    return grown


def _caption(rect: pymupdf.Rect, lines: Sequence[Line],
             captions: Mapping[int, tuple[str, list[Line]]]) -> tuple[str, str | None]:
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
    text = caption_text(captions.get(id(best[1]), (best[1].text, [best[1]])), (rect.x0, rect.y0, rect.x1, rect.y1))
    kind = caption_kind(text)
    return text, kind[1] if kind else None
