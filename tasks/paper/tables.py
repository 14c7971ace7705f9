"""Tables found by their captions: the lines next to a "Table N" caption (below it, else above it) down to the
next prose line, caption or wide gap (horizontal rules bridge gaps) are rebuilt from word positions
(`unruled.build_grid`), ruled or not. No layout model or table finder runs, so pages without a table caption cost
nothing. The CSV keeps the printed text; `styles` keeps bold/italic per cell; `table_numbers` lists every value
with its ± spread."""
from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.paper.bundle import ReportedNumber, Table, unique_id
from tasks.paper.layout import EQUATION_NUMBER, GUTTER_PT, Line, caption_kind, caption_text
from tasks.paper.numbers import parse_value
from tasks.paper.outlined import OCR_WARNING, outlined_table
from tasks.paper.unruled import build_grid
from tasks.paper.words import rows_of, words_in

if TYPE_CHECKING:
    import pymupdf

ROW_GAP_FACTOR = 1.9
"""A vertical gap wider than this many line heights (with no rule in it) ends the table."""
CAPTION_GAP_FACTOR = 3.2
"""Between the caption and the table's first line TeX leaves a caption skip: a wider gap is allowed there."""
PROSE_WORDS = 7
"""A line of at least this many words with no cell-wide gap is running text, not a table row."""
NUMERIC_ROW_SHARE = 0.4
EMPTY_CELLS = {"—", "–", "-", "n/a", "N/A"}
"""A line whose words are this share of measured values (decimals, percentages) or empty-cell dashes is a table
row, not prose."""
RULE_MIN_WIDTH_PT = 20.0
RESULT_CELL = re.compile(r"\d\.\d|±|%")
"""A cell that reads as a measured result (decimals, a spread, a percentage), not as a label."""
WIDEN_GAP_PT = 40.0
TWO_COLUMN_CROSSING = 0.4
"""A page where fewer of the lines than this share cross its middle is set in two columns."""
CELL_BOX_MAX_PT = 40.0
"""Stroked rectangles up to this height are table cells whose edges are rules; larger ones frame figures."""
"""Cells beside the caption's width join the table while they sit this close to it."""


def extract_tables(page: pymupdf.Page, lines: Sequence[Line], captions: Mapping[int, tuple[str, list[Line]]],
                   out_dir: Path, taken: set[str], ruled: bool = True) -> list[Table]:
    """Tables of one page, written as `tables/<id>.csv` under `out_dir`; `taken` holds the ids in use.
    `ruled` says whether the page has drawings (rules are then read to split header and row groups)."""
    table_captions = [block for block in captions.values() if (caption_kind(block[1][0].text) or ("",))[0] == "table"]
    if not table_captions:
        return []
    rules, verticals = page_rules(page) if ruled else ([], [])
    page_words = page.get_text("words")
    # Every caption's lines end a table (a caption's last line, "original results.", is no table row).
    claimed: set[int] = set()
    stops = {id(ln) for _, parts in captions.values() for ln in parts}
    tables: list[Table] = []
    side = _captions_side(table_captions, lines, rules, page_words, stops)
    for block in table_captions:
        found = _table_below_or_above(page, block[1], lines, rules, verticals, page_words, claimed | stops, side)
        ocr = found is None
        if ocr:
            outlined = outlined_table(page, block[1], lines, rules, verticals, page_words)
            if outlined is None:
                continue
            found = outlined, []
        grid, members = found
        claimed.update(id(ln) for ln in members)
        caption = caption_text(block, grid.bbox)
        kind = caption_kind(caption)
        table = _table(out_dir, taken, page.number, grid, caption, kind[1] if kind else None)
        if ocr:
            table.warnings = [OCR_WARNING]
        tables.append(table)
    return tables


def page_rules(page: pymupdf.Page) -> tuple[list[tuple[float, float, float]], list[tuple[float, float, float]]]:
    """Drawn rules: horizontal (y, x0, x1) and vertical (x, y0, y1), from lines and hairline rectangles
    (booktabs and tabular draw their rules as thin filled boxes). Raw drawings: no Python objects per path."""
    horizontal: list[tuple[float, float, float]] = []
    vertical: list[tuple[float, float, float]] = []
    for drawing in page.get_cdrawings():
        for item in drawing["items"]:
            if item[0] == "l":
                (px, py), (qx, qy) = item[1], item[2]
                if abs(py - qy) < 1 and abs(px - qx) >= RULE_MIN_WIDTH_PT:
                    horizontal.append(((py + qy) / 2, min(px, qx), max(px, qx)))
                elif abs(px - qx) < 1 and abs(py - qy) >= 5:
                    vertical.append(((px + qx) / 2, min(py, qy), max(py, qy)))
            elif item[0] == "re":
                x0, y0, x1, y1 = item[1]
                x0, x1, y0, y1 = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
                if y1 - y0 < 1.6 and x1 - x0 >= RULE_MIN_WIDTH_PT:
                    horizontal.append(((y0 + y1) / 2, x0, x1))
                elif x1 - x0 < 1.6 and y1 - y0 >= 5:
                    vertical.append(((x0 + x1) / 2, y0, y1))
                elif "s" in str(drawing.get("type", "")) and y1 - y0 <= CELL_BOX_MAX_PT:
                    # A stroked cell box (grids drawn cell by cell, as word processors do): its edges are rules.
                    horizontal += [(y0, x0, x1), (y1, x0, x1)]
                    vertical += [(x0, y0, y1), (x1, y0, y1)]
    return _joined(horizontal), sorted(vertical)


def _joined(segments: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """Horizontal rules with collinear pieces that touch joined (a row rule drawn cell by cell is one rule)."""
    out: list[tuple[float, float, float]] = []
    for y, a, b in sorted(segments, key=lambda s: (round(s[0]), s[1])):
        if out and abs(out[-1][0] - y) < 0.5 and a <= out[-1][2] + 1:
            out[-1] = (out[-1][0], out[-1][1], max(out[-1][2], b))
        else:
            out.append((y, a, b))
    return sorted(out)


def _is_prose(line: Line, page_words: Sequence[tuple]) -> bool:
    """Running text: many words and no gap wider than a cell gap between them, most of them not numbers (a
    narrow results row "Mayhew et al. (2017) 59.1 66.0 66.5 —" is set as tightly as a sentence)."""
    x0, y0, x1, y1 = line.bbox
    words = [w for w in page_words if x0 - 1 <= (w[0] + w[2]) / 2 <= x1 + 1 and y0 - 1 <= (w[1] + w[3]) / 2 <= y1 + 1]
    if len(words) < PROSE_WORDS:
        return False
    if sum(RESULT_CELL.search(w[4]) is not None or w[4] in EMPTY_CELLS for w in words) >= NUMERIC_ROW_SHARE * len(words):
        return False
    words.sort(key=lambda w: w[0])
    widest = max((b[0] - a[2] for a, b in pairwise(words)), default=0.0)
    return widest < 0.75 * line.size


def _table_below_or_above(page: pymupdf.Page, caption: Sequence[Line], lines: Sequence[Line],
                          rules: Sequence[tuple[float, float, float]], verticals: Sequence[tuple[float, float, float]],
                          page_words: Sequence[tuple], claimed: set[int], side: bool | None = None):
    candidates = [_neighbours(page_words, caption, lines, rules, claimed, below) for below in (True, False)]
    # The table is on the side of the caption with the nearer first line (papers put captions above or below),
    # unless the page's unambiguous captions show on which side its tables are (a caption between two tables).
    if side is not None and all(len(m) >= 2 for m in candidates):
        candidates = [candidates[0 if side else 1]]
    candidates.sort(key=lambda m: _distance(caption, m) if m else float("inf"))
    for members in candidates:
        if len(members) < 2:
            continue
        members = _widen(members, caption, lines, page_words, claimed, rules)
        x0 = min(ln.bbox[0] for ln in members) - 1
        x1 = max(ln.bbox[2] for ln in members) + 1
        y0 = min(ln.bbox[1] for ln in members) - 1
        y1 = max(ln.bbox[3] for ln in members) + 1
        words = words_in(page, (x0, y0, x1, y1))
        inside = [(y, a, b) for y, a, b in rules if y0 - 4 <= y <= y1 + 4 and b > x0 and a < x1]
        cuts = sorted({round(x, 1) for x, a, b in verticals if x0 <= x <= x1 and a < y1 and b > y0})
        grid = build_grid(rows_of(words), inside, cuts)
        if grid is not None:
            return grid, members
    return None


def _captions_side(table_captions, lines: Sequence[Line], rules: Sequence[tuple[float, float, float]],
                   page_words: Sequence[tuple], stops: set[int]) -> bool | None:
    """Whether this page's tables lie below their captions (True) or above (False), by the captions with a table
    on one side only; None when they do not say or disagree."""
    votes = set()
    for _, caption in table_captions:
        sides = [len(_neighbours(page_words, caption, lines, rules, stops, below)) >= 2 for below in (True, False)]
        if sides[0] != sides[1]:
            votes.add(sides[0])
    return votes.pop() if len(votes) == 1 else None


def _widen(members: list[Line], caption: Sequence[Line], lines: Sequence[Line], page_words: Sequence[tuple],
           claimed: set[int], rules: Sequence[tuple[float, float, float]] = ()) -> list[Line]:
    """Add the cells of the same rows that lie beside the caption's width (a table wider than its caption):
    near ones, and far ones when a rule of the table's rows runs across the gap (a ruled grid)."""
    y0 = min(ln.bbox[1] for ln in members)
    y1 = max(ln.bbox[3] for ln in members)
    inside = {id(ln) for ln in members} | {id(ln) for ln in caption} | claimed
    column = _one_column(list(members) + list(caption), lines)
    band = [ln for ln in lines if id(ln) not in inside and y0 - 1 <= ln.center[1] <= y1 + 1
            and not caption_kind(ln.text) and not _is_prose(ln, page_words) and not _wrapped_text(ln)
            and (column is None or _one_column([ln], lines) == column)]
    # A figure or table set beside this one (its caption beside ours, not over it) holds the lines above its own
    # caption: a plot's tick labels beside a table are no cells of it.
    cx0, cx1 = min(ln.bbox[0] for ln in caption), max(ln.bbox[2] for ln in caption)
    beside = [ln.bbox for ln in lines if ln not in caption and caption_kind(ln.text)
              and abs(ln.bbox[1] - caption[0].bbox[1]) < 3 * _height(caption[0]) and (ln.bbox[0] >= cx1 or ln.bbox[2] <= cx0)]
    band = [ln for ln in band if not any(a <= ln.center[0] <= b for a, _, b, _ in beside)]
    x0, x1 = min(ln.bbox[0] for ln in members), max(ln.bbox[2] for ln in members)
    added = True
    while added:
        added = False
        for line in band:
            near = line.bbox[0] - x1 < WIDEN_GAP_PT and x0 - line.bbox[2] < WIDEN_GAP_PT
            bridged = any(y0 - 4 <= y <= y1 + 4 and a <= min(x1, line.bbox[0]) + 1 and b >= max(x0, line.bbox[2]) - 1
                          for y, a, b in rules)
            if id(line) not in inside and (near or bridged):
                members.append(line)
                inside.add(id(line))
                x0, x1 = min(x0, line.bbox[0]), max(x1, line.bbox[2])
                added = True
    return sorted(members, key=lambda ln: (ln.bbox[1], ln.bbox[0]))


def _one_column(block: Sequence[Line], lines: Sequence[Line]) -> str | None:
    """"left" / "right" when `block` lies in one column of a two-column page (most of the page's lines stay on
    one side of its middle), else None. A table set in one column never reaches into the other column's text."""
    x0, x1 = min(ln.bbox[0] for ln in lines), max(ln.bbox[2] for ln in lines)
    mid = (x0 + x1) / 2
    crossing = sum(1 for ln in lines if ln.bbox[0] < mid - GUTTER_PT and ln.bbox[2] > mid + GUTTER_PT)
    if crossing >= TWO_COLUMN_CROSSING * len(lines):
        return None
    if all(ln.bbox[2] <= mid + GUTTER_PT for ln in block):
        return "left"
    if all(ln.bbox[0] >= mid - GUTTER_PT for ln in block):
        return "right"
    return None


def _wrapped_text(line: Line) -> bool:
    """A line of a paragraph set beside a table (wraptable): several words and no figures."""
    return len(line.text.split()) >= 5 and not any(ch.isdigit() for ch in line.text)


def _distance(caption: Sequence[Line], members: Sequence[Line]) -> float:
    top, bottom = caption[0].bbox[1], caption[-1].bbox[3]
    return min(abs(members[0].bbox[1] - bottom), abs(top - members[-1].bbox[3]))


def _neighbours(page_words: Sequence[tuple], caption: Sequence[Line], lines: Sequence[Line],
                rules: Sequence[tuple[float, float, float]], claimed: set[int], below: bool) -> list[Line]:
    """The lines of the table block next to the caption, nearest first, in page order."""
    edge = caption[-1].bbox[3] if below else caption[0].bbox[1]
    cap_ids = {id(ln) for ln in caption}
    left, right = min(ln.bbox[0] for ln in caption), max(ln.bbox[2] for ln in caption)
    # Lines under the caption's column (the other column of a two-column page is not part of the table).
    side = [ln for ln in lines if id(ln) not in cap_ids and ln.bbox[0] < right and ln.bbox[2] > left
            and (ln.center[1] > edge if below else ln.center[1] < edge)]
    side.sort(key=lambda ln: ln.bbox[1], reverse=not below)
    picked: list[Line] = []
    ref = edge
    stop: Line | None = None
    for line in side:
        gap = line.bbox[1] - ref if below else ref - line.bbox[3]
        # Line height of the table so far (a larger heading after the table must not widen the allowed gap).
        height = max(min([_height(ln) for ln in picked[-3:]] + [_height(line)]), 1.0)
        near = line.bbox[1] if below else line.bbox[3]
        # A rule in a wide gap (under a header, between row groups) keeps the table going when it sits close
        # to both lines; a figure after the bottom rule is further away.
        ruled_gap = any(min(ref, near) <= y <= max(ref, near) and abs(y - ref) <= 1.4 * height
                        and abs(near - y) <= 1.4 * height for y, _, _ in rules)
        if caption_kind(line.text) or id(line) in claimed:
            break  # another caption or another table's line
        if _is_prose(line, page_words) and not _number_beside(line, side) and not _cell_beside(line, lines):
            stop = line
            break  # running text
        if picked and line.size > 1.15 * max(ln.size for ln in [*picked, *caption]):
            break  # a heading after the table
        allowed = (CAPTION_GAP_FACTOR if not picked else ROW_GAP_FACTOR) * height
        if gap > allowed and not ruled_gap:
            break
        picked.append(line)
        ref = line.bbox[3] if below else line.bbox[1]
    # The short last line of the paragraph that ends where the table begins ("future work."), past the table's
    # outer rule, is text: it hugs the prose line that stopped the search.
    while stop is not None and len(picked) >= 2 and _hugs(picked[-1], stop) and any(
            min(picked[-1].center[1], picked[-2].center[1]) < y < max(picked[-1].center[1], picked[-2].center[1])
            for y, _, _ in rules):
        stop = picked.pop()
    return picked if below else picked[::-1]


def _height(line: Line) -> float:
    """A line's height, at least its font size: fonts embedded without ascender and descender give boxes a
    third of the glyphs' height (AutoML's Libertine), and the gaps between rows would all look wide."""
    return max(line.bbox[3] - line.bbox[1], line.size)


def _hugs(line: Line, prose: Line) -> bool:
    """`line` ends the paragraph of `prose`: a sentence's end, the next line at body line spacing, same size, set
    from the same left edge."""
    gap = max(line.bbox[1] - prose.bbox[3], prose.bbox[1] - line.bbox[3])
    return abs(line.size - prose.size) < 0.3 and gap < 0.6 * (prose.bbox[3] - prose.bbox[1]) \
        and abs(line.bbox[0] - prose.bbox[0]) < 2.0 and line.text.rstrip().endswith((".", "!", "?", ":"))


def _cell_beside(line: Line, lines: Sequence[Line]) -> bool:
    """A long text cell ("Model does not satisfy the idea in the requirements.") reads like running text, but a
    short cell printed beside it on the same row, in the same column of the page, makes the row a table row."""
    height = line.bbox[3] - line.bbox[1]
    mid = (min(ln.bbox[0] for ln in lines) + max(ln.bbox[2] for ln in lines)) / 2

    def same_half(other: Line) -> bool:
        if line.bbox[2] <= mid:
            return other.bbox[2] <= mid
        if line.bbox[0] >= mid:
            return other.bbox[0] >= mid
        return True

    return any(abs(o.center[1] - line.center[1]) < 0.5 * height and len(o.text.split()) < PROSE_WORDS
               and (o.bbox[0] - line.bbox[2] > height or line.bbox[0] - o.bbox[2] > height) and same_half(o)
               for o in lines if o is not line)


def _number_beside(line: Line, others: Sequence[Line]) -> bool:
    """A long label cell ("Ranges n-m, 1 ≤ n ≤ 100, n ≤ m ≤ 100") reads like running text, but a number printed
    beside it on the same row makes the row a table row."""
    height = line.bbox[3] - line.bbox[1]
    return any(abs(o.center[1] - line.center[1]) < 0.5 * height and (o.bbox[0] > line.bbox[2] or o.bbox[2] < line.bbox[0])
               and parse_value(o.text) is not None and not EQUATION_NUMBER.match(o.text) for o in others)


def _table(out_dir: Path, taken: set[str], page: int, grid, caption: str, number: str | None) -> Table:
    table_id = unique_id(f"table_{number}" if number else "table_unnumbered", taken)
    rel = f"tables/{table_id}.csv"
    (out_dir / "tables").mkdir(parents=True, exist_ok=True)
    with open(out_dir / rel, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([grid.header, *grid.rows])
    numeric = sum(parse_value(cell) is not None for row in grid.rows for cell in row[1:])
    return Table(table_id, page, grid.bbox, caption, grid.header, grid.rows, rel, numeric,
                 ["rebuilt from word positions under its caption"], grid.styles, grid.header_rows)


def row_label(row: Sequence[str]) -> str:
    """The leading text cells of a row ("CIFAR-10 ResNet-56 (ours)"): what names the row. Integer label columns
    before a text label count too when results follow ("1 32 l_shape" then "0.688 ± 0.001": K, grid, geometry)."""
    first_result = next((i for i, cell in enumerate(row) if RESULT_CELL.search(cell)), None)
    if first_result and any(parse_value(c) is None and c for c in row[:first_result]):
        return " ".join(c for c in row[:first_result] if c)
    parts: list[str] = []
    for cell in row:
        if parse_value(cell) is not None:
            break
        if cell:
            parts.append(cell)
    return " ".join(parts) or (row[0] if row else "")


def table_numbers(table: Table) -> list[ReportedNumber]:
    """Every numeric cell, with its row label and column header as context, its ± spread and bold/italic mark."""
    found: list[ReportedNumber] = []
    for r, row in enumerate(table.rows):
        label = row_label(row)
        for c, cell in enumerate(row[1:], start=1):
            parsed = parse_value(cell)
            if parsed is None:
                continue
            column = table.header[c] if c < len(table.header) else f"col{c}"
            style = table.styles[r][c] if r < len(table.styles) and c < len(table.styles[r]) else ""
            found.append(ReportedNumber(
                value=parsed[0], text=cell, source="table", page=table.page,
                context=f"{table.caption.rstrip('. ') or table.id}, row {label!r}, column {column!r}",
                ref={"table": table.id, "row": label, "column": column}, uncertainty=parsed[1], style=style,
            ))
    return found
