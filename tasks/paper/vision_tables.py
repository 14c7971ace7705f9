"""Vision transcription of table crops: when the model takes images, the tables the word-position reader is least
sure of (read by OCR, few numeric cells, ragged rows) are rendered to PNG and the model transcribes each into a
grid (one call per table, a few at once). The transcription never brings a number of its own: a transcribed cell
is kept only if every number in it occurs in the page's text layer (for a table read by OCR: in the words OCR read
there) and every other word in it is printed there too. Kept cells fill the table's empty cells or complete a
cell the reader cut short (a cell wrapped over two lines); the lines of a wrapped cell are then one row. Every
changed cell is marked "vision" in `Table.sources`; a dead endpoint or an unusable reply leaves the table as read,
with a one-line note."""
from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.paper.asker import Ask, first_json
from tasks.paper.bundle import Bundle, Table, write_bundle_files
from tasks.paper.numbers import MINUS_SIGNS, parse_value
from tasks.paper.outlined import OCR_WARNING
from tasks.paper.tables import table_numbers

if TYPE_CHECKING:
    import pymupdf

    from serving.client import ModelEndpoint

VISION_DPI = 150
CROP_MARGIN_PT = 6.0
MAX_TABLES = 12
"""Tables asked about per paper at most (one call each)."""
WORKERS = 4
"""Calls sent at once."""
REPLY_TOKENS = 4096
"""A 20-row, 8-column grid as JSON fits with room to spare."""
LOW_NUMERIC_SHARE = 0.3
RAGGED_SHARE = 0.25
NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?|[-+]?\.\d+")
PROMPT = """Transcribe the table in the image ({caption}) into JSON, exactly as printed:
{{"header": ["first column title", ...], "rows": [["first cell", ...], ...]}}
One inner list per table row (a cell printed over two lines is one cell), each as long as the header; an empty
cell is "". Copy numbers digit for digit with their signs, ± and exponents (10⁻⁴ as printed); never compute, round
or add anything. Reply with the JSON only."""


@dataclass
class Evidence:
    """What is printed where the table is: number tokens and (case-folded) words."""
    numbers: set[str] = field(default_factory=set)
    words: set[str] = field(default_factory=set)


@dataclass
class Merge:
    filled: int = 0
    completed: int = 0
    joined_lines: int = 0
    dropped: int = 0
    disagreed: int = 0


def low_confidence(table: Table) -> str | None:
    """Why the word-position table is worth a second reading, or None: read by OCR, few numeric cells (a text
    table whose lines may have been cut apart), or ragged rows (rows without a label or with far fewer cells)."""
    if OCR_WARNING in table.warnings:
        return "read by OCR"
    cells = [c for row in table.rows for c in row[1:] if c]
    if cells and table.numeric_cells < LOW_NUMERIC_SHARE * len(cells):
        return "few numeric cells"
    counts = [sum(1 for c in row if c) for row in table.rows]
    if counts:
        usual = max(set(counts), key=counts.count)
        ragged = sum(1 for row, n in zip(table.rows, counts, strict=True) if not row[0] or n <= usual - 2)
        if ragged >= RAGGED_SHARE * len(counts):
            return "ragged rows"
    return None


def transcribe_tables(bundle: Bundle, doc: pymupdf.Document, out_dir: Path, ask: Ask,
                      max_tables: int = MAX_TABLES, workers: int = WORKERS) -> list[str]:
    """Ask for a transcription of each low-confidence table (at most `max_tables`, `workers` at once), merge what
    the page confirms, rewrite the bundle's files; returns one note per table asked (also in the warnings)."""
    picked = [(t, why) for t in bundle.tables if (why := low_confidence(t))][:max_tables]
    if not picked:
        return []
    crops = [crop_table(doc[t.page], t, out_dir) for t, _ in picked]
    evidence = [table_evidence(doc[t.page], t) for t, _ in picked]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(ask, PROMPT.format(caption=_quoted(t.caption)), [png])
                   for (t, _), png in zip(picked, crops, strict=True)]
    notes = []
    for (table, why), future, seen in zip(picked, futures, evidence, strict=True):
        try:
            note = _apply(table, future.result(), seen, why)
        except Exception as exc:  # a dead endpoint, a refused image: the table stays as read
            note = f"vision transcription failed ({type(exc).__name__}: {str(exc)[:160]}); kept the table as read"
        note = f"{table.id}: {note}"
        table.warnings.append(note)
        notes.append(note)
    bundle.warnings += notes
    _refresh(bundle, [t for t, _ in picked], out_dir)
    return notes


def transcribe_with_endpoint(bundle: Bundle, doc: pymupdf.Document, out_dir: Path, endpoint: ModelEndpoint
                             ) -> list[str]:
    """`transcribe_tables` on a served model, only when it takes images (the embedded SmolLM2 does not: nothing
    is asked) and some table is worth it; an endpoint that does not answer gives one note, the tables as read."""
    from serving.client import EndpointUnavailable
    from tasks.paper.asker import endpoint_asker

    if not endpoint.vision or not any(low_confidence(t) for t in bundle.tables):
        return []
    try:
        ask, _ = endpoint_asker(endpoint, REPLY_TOKENS)
    except EndpointUnavailable as exc:
        note = f"vision transcription of tables skipped ({' '.join(str(exc).split())[:200]}); tables kept as read"
        bundle.warnings.append(note)
        write_bundle_files(bundle, out_dir)
        return [note]
    return transcribe_tables(bundle, doc, out_dir, ask)


def _quoted(caption: str) -> str:
    return f'caption "{" ".join(caption.split())[:200]}"' if caption else "no caption"


def _apply(table: Table, reply: str, seen: Evidence, why: str) -> str:
    grid = parse_grid(reply)
    if grid is None:
        return f"vision reply was not a table grid ({why}); kept the table as read"
    merge = merge_transcription(table, *grid, seen)
    if merge is None:
        return f"vision transcription's columns did not match the table's ({why}); kept the table as read"
    return (f"vision transcription ({why}): {merge.filled} cells filled, {merge.completed} completed, "
            f"{merge.joined_lines} wrapped lines joined, {merge.dropped} dropped (not printed on the page), "
            f"{merge.disagreed} kept as read where the two differ")


def crop_table(page: pymupdf.Page, table: Table, out_dir: Path) -> Path:
    """The table's area (and a margin) as PNG: tables/<id>.png in the bundle."""
    import pymupdf

    x0, y0, x1, y1 = table.bbox
    clip = pymupdf.Rect(x0 - CROP_MARGIN_PT, y0 - CROP_MARGIN_PT, x1 + CROP_MARGIN_PT, y1 + CROP_MARGIN_PT) & page.rect
    path = out_dir / "tables" / f"{table.id}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.get_pixmap(clip=clip, dpi=VISION_DPI).save(path)
    return path


def table_evidence(page: pymupdf.Page, table: Table) -> Evidence:
    """The page's words (its text layer); for a table read by OCR (no text layer there) the words OCR read."""
    if OCR_WARNING in table.warnings:
        texts = [*table.header, *(c for row in table.header_rows for c in row), *(c for row in table.rows for c in row)]
    else:
        texts = [w[4] for w in page.get_text("words")]
    seen = Evidence()
    for text in texts:
        seen.numbers |= numbers_of(text)
        seen.words |= words_of(text)
    return seen


def _plain(text: str) -> str:
    """NFKC (superscript digits to digits, "−" kept apart) with every minus sign as "-"."""
    return unicodedata.normalize("NFKC", text).translate(MINUS_SIGNS)


def numbers_of(text: str) -> set[str]:
    return {m.lstrip("+") for m in NUMBER.findall(_plain(text))}


def words_of(text: str) -> set[str]:
    """Case-folded words without their digits (numbers are checked as numbers)."""
    return {w for w in re.split(r"[^\w]+|\d+|_", _plain(text).casefold()) if w}


def confirmed(cell: str, seen: Evidence) -> bool:
    """Every number of the cell occurs on the page, and every word of it is printed there."""
    return numbers_of(cell) <= seen.numbers and words_of(cell) <= seen.words


def parse_grid(reply: str) -> tuple[list[str], list[list[str]]] | None:
    """(header, rows) from the model's JSON; None unless it is a grid of strings at least 2 columns wide whose rows
    are no longer than the header (short rows are padded)."""
    data = first_json(reply, "{")
    if not isinstance(data, dict):
        return None
    header, rows = data.get("header"), data.get("rows")
    if not isinstance(header, list) or not isinstance(rows, list) or len(header) < 2 or not rows:
        return None
    if not all(isinstance(row, list) and len(row) <= len(header) for row in rows):
        return None
    cells = [header, *rows]
    if not all(isinstance(c, str | int | float) and not isinstance(c, bool) for row in cells for c in row):
        return None
    return [str(c) for c in header], [[str(c) for c in row] + [""] * (len(header) - len(row)) for row in rows]


def _tokens(text: str) -> set[str]:
    return numbers_of(text) | words_of(text)


def _column_map(header: Sequence[str], table: Table) -> dict[int, int]:
    """Transcribed column -> table column: same header words (either holding the other's), else by position when
    both have as many columns."""
    out: dict[int, int] = {}
    for j, title in enumerate(header):
        want = _tokens(title)
        match = [c for c, have in enumerate(table.header) if want and (want <= _tokens(have) or _tokens(have) <= want)
                 and _tokens(have) and c not in out.values()]
        if match:
            out[j] = match[0]
    if len(out) < len(header) // 2 + 1 and len(header) == len(table.header):
        return dict(enumerate(range(len(header))))
    return out


def merge_transcription(table: Table, header: Sequence[str], rows: Sequence[Sequence[str]],
                        seen: Evidence) -> Merge | None:
    """Merge a transcription into `table` in place (see the module's docstring); None when the columns cannot be
    matched (the table is left as it was)."""
    columns = _column_map(header, table)
    if len(columns) < 2:
        return None
    merge = Merge()
    while len(table.styles) < len(table.rows):
        table.styles.append([""] * len(table.header))
    table.sources = [list(s) if s else [""] * len(r) for s, r in zip(table.sources, table.rows, strict=False)] + \
        [[""] * len(r) for r in table.rows[len(table.sources):]]
    used: set[int] = set()
    for vrow in rows:
        # Rows are matched by their first cell (a text table's label is its first cell only); of several rows
        # with that label (a multirow label given to each sub-row, a wrapped cell's lines) the one that agrees
        # with the transcription in most cells, then the fullest.
        first = _tokens(vrow[0])
        candidates = [i for i, row in enumerate(table.rows) if i not in used and first and row
                      and _tokens(row[0]) == first]
        if not candidates:
            continue
        i = max(candidates, key=lambda k: (_agreement(table.rows[k], vrow, columns),
                                           sum(1 for c in table.rows[k] if c)))
        used.add(i)
        for j, c in columns.items():
            _merge_cell(table, i, c, vrow[j], seen, merge)
        merge.joined_lines += _join_fragments(table, i, [k for k in candidates if k != i], used)
    return merge


def _agreement(row: Sequence[str], vrow: Sequence[str], columns: dict[int, int]) -> int:
    return sum(1 for j, c in columns.items() if c < len(row) and row[c] and _tokens(row[c]) == _tokens(vrow[j]))


def _merge_cell(table: Table, i: int, c: int, text: str, seen: Evidence, merge: Merge) -> None:
    row = table.rows[i]
    if c >= len(row) or not text.strip():
        return
    have = row[c]
    if _tokens(text) == _tokens(have):
        return
    if not confirmed(text, seen):
        merge.dropped += 1
    elif not have:
        row[c], table.sources[i][c] = text, "vision"
        merge.filled += 1
    elif _tokens(have) and _tokens(have) <= _tokens(text):  # the reader cut the cell short (a wrapped cell)
        row[c], table.sources[i][c] = text, "vision"
        merge.completed += 1
    else:
        merge.disagreed += 1


def _join_fragments(table: Table, i: int, others: Sequence[int], used: set[int]) -> int:
    """Rows with the same label whose every cell is now inside row i's cell of its column (the other lines of
    wrapped cells) are removed; returns how many."""
    drop = [k for k in others if all(not cell or c == 0 or _tokens(cell) <= _tokens(table.rows[i][c])
                                     for c, cell in enumerate(table.rows[k]))
            and any(cell for cell in table.rows[k][1:])]
    for k in sorted(drop, reverse=True):
        for rows in (table.rows, table.styles, table.sources):
            if k < len(rows):
                del rows[k]
        used.discard(k)
        shifted = {u - 1 if u > k else u for u in used}
        used.clear()
        used |= shifted
    return len(drop)


def _refresh(bundle: Bundle, tables: Sequence[Table], out_dir: Path) -> None:
    """Rewrite the CSVs and the number list of the tables asked about, and the bundle's files."""
    ids = {t.id for t in tables}
    for table in tables:
        table.numeric_cells = sum(parse_value(c) is not None for row in table.rows for c in row[1:])
        with open(out_dir / table.csv, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([table.header, *table.rows])
    bundle.numbers = [n for n in bundle.numbers if not (n.source == "table" and n.ref.get("table") in ids)]
    bundle.numbers += [n for t in tables for n in table_numbers(t)]
    write_bundle_files(bundle, out_dir)
