"""Tables: PyMuPDF's table finder, with every cell re-read from the words inside it, because the finder can
scramble numbers (it was seen to return "150\\n." for a printed "1.50"). The CSV keeps the printed text."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from tasks.paper.bundle import ReportedNumber, Table
from tasks.paper.layout import Line, caption_kind, caption_text
from tasks.paper.bundle import unique_id
from tasks.paper.numbers import parse_number

if TYPE_CHECKING:
    import pymupdf

CAPTION_DISTANCE_PT = 60.0


def extract_tables(page: "pymupdf.Page", lines: Sequence[Line], captions: Mapping[int, tuple[str, list[Line]]],
                   out_dir: Path, taken: set[str]) -> list[Table]:
    """Tables of one page, written as `tables/<id>.csv` under `out_dir`; `taken` holds the ids in use."""
    tables: list[Table] = []
    for found in page.find_tables().tables:
        rows, warnings = _validated_rows(page, found)
        if len(rows) < 2 or max(len(r) for r in rows) < 2:
            continue
        bbox = tuple(round(v, 2) for v in found.bbox)
        caption, number = _caption(bbox, lines, captions)
        table_id = unique_id(f"table_{number}" if number else "table_unnumbered", taken)
        rel = f"tables/{table_id}.csv"
        (out_dir / "tables").mkdir(parents=True, exist_ok=True)
        with open(out_dir / rel, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)
        numeric = sum(parse_number(cell) is not None for row in rows[1:] for cell in row[1:])
        tables.append(Table(table_id, page.number, bbox, caption, rows[0], rows[1:], rel, numeric, warnings))
    return tables


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
             captions: Mapping[int, tuple[str, list[Line]]]) -> tuple[str, str | None]:
    """The nearest "Table N:" line above or below the table."""
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
        return "", None
    text = caption_text(captions.get(id(best[1]), (best[1].text, [best[1]])), bbox)
    return text, caption_kind(text)[1]


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
