"""Tables: PyMuPDF's table finder, with every cell re-read from the words inside it, because the finder can
scramble numbers (it was seen to return "150\\n." for a printed "1.50"); captions left without a table are read
as unruled tables (unruled.py). The CSV keeps the printed text."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from tasks.paper.bundle import ReportedNumber, Table
from tasks.paper.layout import Line, caption_kind, caption_text
from tasks.paper.bundle import unique_id
from tasks.paper.numbers import parse_number
from tasks.paper.unruled import unruled_table

if TYPE_CHECKING:
    import pymupdf

CAPTION_DISTANCE_PT = 60.0


def extract_tables(page: "pymupdf.Page", lines: Sequence[Line], captions: Mapping[int, tuple[str, list[Line]]],
                   out_dir: Path, taken: set[str], ruled: bool = True) -> list[Table]:
    """Tables of one page, written as `tables/<id>.csv` under `out_dir`; `taken` holds the ids in use. Fully
    ruled tables come from the table finder (only when `ruled`: the page has drawings); a table caption left
    without a table is then read from word positions (booktabs and rule-less tables)."""
    tables: list[Table] = []
    used: set[int] = set()
    for found in (page.find_tables().tables if ruled else []):
        if not _has_vertical_rules(page, found.bbox):
            # booktabs-style: horizontal rules plus text alignment made the finder merge this table, the next
            # one and the references into one grid; the caption-based reader below gets it right.
            continue
        rows, warnings = _validated_rows(page, found)
        if len(rows) < 2 or max(len(r) for r in rows) < 2:
            continue
        bbox = tuple(round(v, 2) for v in found.bbox)
        caption, number, first = _caption(bbox, lines, captions)
        used.add(first)
        tables.append(_table(out_dir, taken, page.number, bbox, caption, number, rows, warnings))
    for first_id, block in captions.items():
        first = block[1][0]
        if first_id in used or (caption_kind(first.text) or ("",))[0] != "table":
            continue
        found_unruled = unruled_table(page, block[1], lines, _column_width(page, first))
        if found_unruled is None:
            continue
        bbox, rows = found_unruled
        caption = caption_text(block, bbox)
        tables.append(_table(out_dir, taken, page.number, bbox, caption, caption_kind(caption)[1], rows,
                             ["read without rulings: columns from word positions"]))
    return tables


def _has_vertical_rules(page: "pymupdf.Page", bbox: Sequence[float]) -> bool:
    """True when drawn vertical lines or boxes lie inside `bbox`: a fully ruled grid the finder can trust."""
    import pymupdf

    area = pymupdf.Rect(bbox) + (-2, -2, 2, 2)
    for drawing in page.get_drawings():
        for item in drawing["items"]:
            if item[0] == "l" and abs(item[1].x - item[2].x) < 1 and abs(item[1].y - item[2].y) > 5 \
                    and area.contains(item[1]) and area.contains(item[2]):
                return True
            if item[0] == "re" and item[1].height > 5 and area.contains(item[1]):
                return True
    return False


def _column_width(page: "pymupdf.Page", line: Line) -> float:
    mid = page.rect.width / 2
    in_column = line.bbox[2] <= mid + 12 or line.bbox[0] >= mid - 12
    return page.rect.width * (0.4 if in_column else 0.8)


def _table(out_dir: Path, taken: set[str], page: int, bbox: tuple[float, ...], caption: str, number: str | None,
           rows: list[list[str]], warnings: list[str]) -> Table:
    table_id = unique_id(f"table_{number}" if number else "table_unnumbered", taken)
    rel = f"tables/{table_id}.csv"
    (out_dir / "tables").mkdir(parents=True, exist_ok=True)
    with open(out_dir / rel, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    numeric = sum(parse_number(cell) is not None for row in rows[1:] for cell in row[1:])
    return Table(table_id, page, bbox, caption, rows[0], rows[1:], rel, numeric, warnings)


def _validated_rows(page: "pymupdf.Page", found: "pymupdf.table.Table") -> tuple[list[list[str]], list[str]]:
    """Cell texts read from the words inside each cell; differences from the finder's text become warnings."""
    import pymupdf

    extracted = found.extract()
    rows: list[list[str]] = []
    warnings: list[str] = []
    for r, row in enumerate(found.rows):
        out_row: list[str] = []
        for c, cell in enumerate(row.cells):
            finder = " ".join((extracted[r][c] or "").split()) if r < len(extracted) else ""
            if cell is None:
                out_row.append(finder)
                continue
            words = page.get_text("words", clip=pymupdf.Rect(cell))
            text = " ".join(w[4] for w in sorted(words, key=lambda w: (round(w[1]), w[0])))
            if text.replace(" ", "") != finder.replace(" ", ""):
                warnings.append(f"cell ({r},{c}): table finder read {finder!r}, words inside the cell read {text!r}")
            out_row.append(text)
        rows.append(out_row)
    return rows, warnings


def _caption(bbox: tuple[float, ...], lines: Sequence[Line],
             captions: Mapping[int, tuple[str, list[Line]]]) -> tuple[str, str | None, int]:
    """The nearest "Table N:" caption above or below the table: (text, number, id of its first line)."""
    best: tuple[float, Line] | None = None
    for line in lines:
        kind = caption_kind(line.text)
        if not kind or kind[0] != "table":
            continue
        last = captions.get(id(line), ("", [line]))[1][-1]
        gap = min(abs(last.bbox[3] - bbox[1]), abs(line.bbox[1] - bbox[3]))
        if gap <= CAPTION_DISTANCE_PT and (best is None or gap < best[0]):
            best = (gap, line)
    if best is None:
        return "", None, 0
    text = caption_text(captions.get(id(best[1]), (best[1].text, [best[1]])), bbox)
    return text, caption_kind(text)[1], id(best[1])


def table_numbers(table: Table) -> list[ReportedNumber]:
    """Every numeric cell, with its row label (first cell) and column header as context."""
    found: list[ReportedNumber] = []
    for row in table.rows:
        label = row[0] if row else ""
        for c, cell in enumerate(row[1:], start=1):
            value = parse_number(cell)
            if value is None:
                continue
            column = table.header[c] if c < len(table.header) else f"col{c}"
            found.append(ReportedNumber(
                value=value, text=cell, source="table", page=table.page,
                context=f"{table.caption.rstrip('. ') or table.id}, row {label!r}, column {column!r}",
                ref={"table": table.id, "row": label, "column": column},
            ))
    return found
