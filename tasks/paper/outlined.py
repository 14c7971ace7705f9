"""Tables printed as glyph outlines: some publishers' production (IEEE Access) inserts each table as vector paths,
so the table has no text layer and no words to rebuild. When a table caption has no table text beside it but a
block of filled paths, that block is rendered and read by Tesseract (the vertical rules painted out first: with
them Tesseract drops the cells between two rules), and its words go through the same grid builder as text words.
Bold is not seen this way; each such table says so in its warnings."""
from __future__ import annotations

import csv
import io
import os
import re
import subprocess
from collections import defaultdict
from collections.abc import Sequence
from statistics import median
from typing import TYPE_CHECKING

from tasks.paper.layout import Line
from tasks.paper.pdf import ocr_available
from tasks.paper.unruled import Grid, build_grid
from tasks.paper.words import Word, rows_of

if TYPE_CHECKING:
    import pymupdf

OCR_DPI = 300
MIN_OUTLINE_PATHS = 30
"""A block of at least this many filled paths and no text beside a table caption is a table set as outlines."""
RULE_MASK_PT = 1.2
"""Half-width of the strip painted white over a vertical rule before reading."""
CAP_HEIGHT_EM = 0.7
"""Digits and capitals are about this share of the font size tall: OCR boxes give the font size back."""
RULE_MARKS = set("|=_~¦")
OCR_TIMEOUT_S = 60
OCR_EXPONENT = re.compile(r"^([0-9lIO]+(?:\.[0-9]+)?)e([~—–\-−])([0-9]{1,3})$")
OCR_DIGITS = str.maketrans("lIO", "110")
OCR_WARNING = "printed as glyph outlines (no text layer): read by OCR, bold not seen, check superscripts"


def outlined_table(page: pymupdf.Page, caption: Sequence[Line], lines: Sequence[Line],
                   rules: Sequence[tuple[float, float, float]], verticals: Sequence[tuple[float, float, float]],
                   page_words: Sequence[tuple]) -> Grid | None:
    """The table next to `caption` read from its outlines, or None (text beside the caption, no outlines, no
    Tesseract)."""
    if not ocr_available():
        return None
    for below in (True, False):
        area = _outline_block(page, caption, lines, page_words, below)
        if area is None:
            continue
        x0, y0, x1, y1 = area
        columns = _column_rules(verticals, area)
        words = ocr_words(page, area, columns)
        inside = [(y, a, b) for y, a, b in rules if y0 - 4 <= y <= y1 + 4 and b > x0 and a < x1]
        cuts = sorted({round(x, 1) for x, _, _ in columns})
        grid = build_grid(rows_of(words), inside, cuts)
        if grid is not None:
            return grid
    return None


def _column_rules(verticals: Sequence[tuple[float, float, float]], area: tuple[float, float, float, float]
                  ) -> list[tuple[float, float, float]]:
    """The vertical rules between columns: straight strokes of the outlined glyphs ("1", "l", "D") are vertical
    segments too, but only a rule covers half the table's height at one x (drawn row by row or at once)."""
    x0, y0, x1, y1 = area
    cover: dict[float, float] = defaultdict(float)
    for x, a, b in verticals:
        if x0 <= x <= x1 and a < y1 and b > y0:
            cover[round(x * 2) / 2] += min(b, y1) - max(a, y0)
    return [(x, y0, y1) for x, length in cover.items() if length >= 0.5 * (y1 - y0)]


def _outline_block(page: pymupdf.Page, caption: Sequence[Line], lines: Sequence[Line], page_words: Sequence[tuple],
                   below: bool) -> tuple[float, float, float, float] | None:
    """The filled paths between the caption and the next text line on that side, when no word lies there."""
    top, bottom = caption[0].bbox[1], caption[-1].bbox[3]
    if below:
        ends = [ln.bbox[1] for ln in lines if ln.bbox[1] > bottom + 1 and ln not in caption]
        y0, y1 = bottom, min(ends, default=page.rect.height)
    else:
        ends = [ln.bbox[3] for ln in lines if ln.bbox[3] < top - 1 and ln not in caption]
        y0, y1 = max(ends, default=0.0), top
    if any(y0 < (w[1] + w[3]) / 2 < y1 for w in page_words):
        return None
    paths = [d["rect"] for d in page.get_drawings() if "f" in (d.get("type") or "")
             and y0 <= d["rect"].y0 and d["rect"].y1 <= y1 and d["rect"].height < 0.5 * (y1 - y0)]
    if len(paths) < MIN_OUTLINE_PATHS:
        return None
    return (min(r.x0 for r in paths) - 2, min(r.y0 for r in paths) - 2,
            max(r.x1 for r in paths) + 2, max(r.y1 for r in paths) + 2)


def ocr_words(page: pymupdf.Page, area: tuple[float, float, float, float],
              verticals: Sequence[tuple[float, float, float]]) -> list[Word]:
    """Words of `area` read by Tesseract from a 400-dpi rendering with the vertical rules painted out, in page
    coordinates; the words of one OCR line share its baseline, all share one font size."""
    import pymupdf

    x0, y0, x1, y1 = area
    scale = OCR_DPI / 72
    pix = page.get_pixmap(dpi=OCR_DPI, clip=pymupdf.Rect(area), colorspace=pymupdf.csGRAY)
    for x, a, b in verticals:
        if x0 <= x <= x1 and a < y1 and b > y0:
            # The pixmap of a clip keeps page coordinates at its resolution (its origin is the clip's corner).
            strip = pymupdf.IRect(int((x - RULE_MASK_PT) * scale), int(max(a, y0) * scale),
                                  int((x + RULE_MASK_PT) * scale) + 1, int(min(b, y1) * scale) + 1)
            pix.set_rect(strip & pix.irect, (255,))
    # One thread: on a table-sized image Tesseract's OpenMP threads cost more CPU than they save.
    result = subprocess.run(["tesseract", "stdin", "stdout", "--psm", "6", "tsv"], input=pix.tobytes("png"),
                            capture_output=True, timeout=OCR_TIMEOUT_S, check=False,
                            env={**os.environ, "OMP_THREAD_LIMIT": "1"})
    boxes: dict[tuple[str, str, str], list[tuple[str, tuple[float, float, float, float]]]] = defaultdict(list)
    for row in csv.DictReader(io.StringIO(result.stdout.decode("utf-8", "replace")), delimiter="\t",
                              quoting=csv.QUOTE_NONE):
        text = (row.get("text") or "").strip()
        if row.get("level") != "5" or not text or set(text) <= RULE_MARKS:
            continue
        left, top_px, width, height = (float(row[k]) for k in ("left", "top", "width", "height"))
        boxes[(row["block_num"], row["par_num"], row["line_num"])].append(
            (text, (x0 + left / scale, y0 + top_px / scale, x0 + (left + width) / scale, y0 + (top_px + height) / scale)))
    heights = [b[3] - b[1] for line in boxes.values() for _, b in line]
    if not heights:
        return []
    size = median(heights) / CAP_HEIGHT_EM
    words: list[Word] = []
    for line in boxes.values():
        baseline = median(b[3] for _, b in line)
        words += [Word(_exponent_fixed(text), bbox, size, baseline, 1, False) for text, bbox in line]
    return words


def _exponent_fixed(text: str) -> str:
    """A number in e-notation as OCR reads it: the raised minus comes out as "~" or a dash and a leading 1 as "l"
    ("le~4", "2.5e—4"); between the "e" and the exponent only a sign can stand, so it is read as a minus. Without
    such a mark the text stays as read (a lost minus would make 1e⁻⁴ read 1e4)."""
    match = OCR_EXPONENT.match(text)
    if not match:
        return text
    mantissa = match.group(1).translate(OCR_DIGITS)
    return f"{mantissa}e-{match.group(3)}"
