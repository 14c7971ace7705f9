"""Tables without rulings (plain tabular, or booktabs drawn without rules): the table finder cannot see them,
so a table caption with no table found next to it is read here from the words around it.

Rows are the caption's neighbouring lines until body text (a line as wide as the column) or a gap; columns are
the gaps in the horizontal projection of all words (cells are separated by wider gaps than words)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from tasks.paper.layout import Line, caption_kind
from tasks.paper.numbers import parse_number

if TYPE_CHECKING:
    import pymupdf

MAX_ROW_GAP_FACTOR = 1.2
"""A vertical gap larger than this many line heights ends the table."""
BODY_WIDTH_SHARE = 0.8
"""A line at least this wide (share of the column) is running text, not a table row."""
COLUMN_GAP_PT = 6.0


def unruled_table(page: "pymupdf.Page", caption: Sequence[Line], lines: Sequence[Line],
                  column_width: float) -> tuple[tuple[float, float, float, float], list[list[str]]] | None:
    """(bbox, rows) of the table under (else above) a caption, or None when no table-like block is there."""
    for rows_lines in (_neighbours(caption, lines, column_width, below=True),
                       _neighbours(caption, lines, column_width, below=False)):
        if len(rows_lines) >= 2:
            table = _grid(page, rows_lines)
            if table is not None:
                return table
    return None


def _neighbours(caption: Sequence[Line], lines: Sequence[Line], column_width: float, below: bool) -> list[Line]:
    edge = caption[-1].bbox[3] if below else caption[0].bbox[1]
    x0 = min(ln.bbox[0] for ln in caption) - column_width * 0.25
    x1 = max(ln.bbox[2] for ln in caption) + column_width * 0.25
    side = [ln for ln in lines if ln.bbox[0] >= x0 and ln.bbox[2] <= x1
            and (ln.bbox[1] >= edge - 1 if below else ln.bbox[3] <= edge + 1) and ln not in caption]
    side.sort(key=lambda ln: ln.bbox[1], reverse=not below)
    picked: list[Line] = []
    for line in side:
        last = picked[-1] if picked else None
        ref = last.bbox if last else (0, edge, 0, edge)
        gap = line.bbox[1] - ref[3] if below else ref[1] - line.bbox[3]
        height = line.bbox[3] - line.bbox[1]
        if gap > MAX_ROW_GAP_FACTOR * height or caption_kind(line.text) \
                or line.bbox[2] - line.bbox[0] >= BODY_WIDTH_SHARE * column_width:
            break
        picked.append(line)
    return picked if below else picked[::-1]


def _grid(page: "pymupdf.Page", rows_lines: Sequence[Line]) -> tuple[tuple[float, float, float, float], list[list[str]]] | None:
    import pymupdf

    box = pymupdf.Rect(rows_lines[0].bbox)
    for line in rows_lines[1:]:
        box |= pymupdf.Rect(line.bbox)
    words = page.get_text("words", clip=box + (-1, -1, 1, 1))
    spans = _column_spans([(w[0], w[2]) for w in words])
    if len(spans) < 2:
        return None
    rows: list[list[str]] = []
    for top, bottom in _row_bands(rows_lines):
        cells: list[list[str]] = [[] for _ in spans]
        for w in sorted(words, key=lambda w: w[0]):
            cy = (w[1] + w[3]) / 2
            if top <= cy <= bottom:
                col = next(i for i, (a, b) in enumerate(spans) if w[0] <= b and w[2] >= a)
                cells[col].append(w[4])
        rows.append([" ".join(c) for c in cells])
    numeric = sum(parse_number(c) is not None for row in rows[1:] for c in row[1:])
    total = sum(1 for row in rows[1:] for _ in row[1:])
    if not total or numeric < 0.5 * total:
        return None  # not a results table (or not a table at all): leave it to the running text
    return tuple(round(v, 2) for v in box), rows


def _row_bands(rows_lines: Sequence[Line]) -> list[tuple[float, float]]:
    """One (top, bottom) band per visual row: pieces of a row set far apart are separate lines."""
    bands: list[list[float]] = []
    for line in sorted(rows_lines, key=lambda ln: ln.center[1]):
        if bands and line.center[1] - (bands[-1][0] + bands[-1][1]) / 2 < 0.5 * (line.bbox[3] - line.bbox[1]):
            bands[-1] = [min(bands[-1][0], line.bbox[1]), max(bands[-1][1], line.bbox[3])]
        else:
            bands.append([line.bbox[1], line.bbox[3]])
    return [(a, b) for a, b in bands]


def _column_spans(intervals: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Merge the words' x-intervals into column spans separated by gaps wider than COLUMN_GAP_PT."""
    spans: list[list[float]] = []
    for a, b in sorted(intervals):
        if spans and a - spans[-1][1] < COLUMN_GAP_PT:
            spans[-1][1] = max(spans[-1][1], b)
        else:
            spans.append([a, b])
    return [(a, b) for a, b in spans]
