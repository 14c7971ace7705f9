"""Tables printed as glyph outlines: some publishers' production (IEEE Access) inserts each table as vector paths,
so the table has no text layer and no words to rebuild. When a table caption has no table text beside it but a
block of filled paths, the paths are read by Tesseract and their words go through the same grid builder as text
words.

The paths themselves give the layout: the producer fills one path per printed word run (a cell's line), and a
superscript, a subscript or a raised minus is a path of its own. So the table is not OCR'd as a picture (Tesseract's
page layout breaks on cells of two lines beside cells of one, and reads a raised "−5" as "~®"): each run is redrawn
alone on its own line of a clean sheet (scripts enlarged to the body size), the sheet is read in ONE Tesseract call
with a single-block layout, and each word is mapped back to the page through its run's position. A flat run is a
dash read by its shape; scripts keep their size and height, so `words.rows_of` writes them as ⁻⁴ / ₂₅ like text
words; rules drawn as filled bars and shading behind cells are no glyphs. Bold is measured too (outlines carry no
font name): a run's stroke width against the table's usual one."""
from __future__ import annotations

import csv
import io
import os
import re
import subprocess
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median
from typing import TYPE_CHECKING

from tasks.paper.layout import Line
from tasks.paper.pdf import ocr_available
from tasks.paper.unruled import Grid, build_grid
from tasks.paper.words import Word, rows_of

if TYPE_CHECKING:
    import numpy as np
    import pymupdf

OCR_DPI = 300
MIN_OUTLINE_PATHS = 30
"""A block of at least this many filled paths and no text beside a table caption is a table set as outlines."""
CAP_HEIGHT_EM = 0.7
"""Digits and capitals are about this share of the font size tall: OCR boxes give the font size back."""
SCRIPT_HEIGHT = 0.8
"""Beside a word, a path less tall than this share of the usual height (a digit's) set lower is a subscript; one
set higher is a superscript whatever its height ("smooth" with ascenders)."""
MARK_HEIGHT = 0.6
"""A path on its own less tall than this share of the usual height is a mark or script ("◇", "†")."""
DASH_HEIGHT = 0.25
"""A run flatter than this share of the usual run height (and wider than tall) is a dash or a minus sign."""
SPECK_HEIGHT = 0.35
"""A run this small that is no dash (a comma or dot set apart) is not read."""
JOIN_GAP = 0.33
"""Paths closer than this share of the usual height are one word: a glyph's side bearings ("1" in tabular figures)
leave up to ~0.2 em between glyphs drawn apart, a word space is 0.25 em or more (the usual height, a digit's,
is ~0.7 em)."""
MAX_SCRIPT_ZOOM = 3.0
SHEET_RUNS = 400
"""Runs per OCR sheet (a sheet of 400 body runs is about 5,000 pt tall)."""
SHEET_MARGIN_PT = 12.0
LINE_GAP = 1.0
"""Blank space between two runs on the OCR sheet, in run heights."""
BOLD_STROKE = 1.38
"""A run whose strokes are this much wider than the table's usual stroke is bold (IEEE Access, Times: regular
runs measure 0.9-1.28 of the usual, capitals the most; bold ones 1.47-1.76)."""
RULE_MARKS = set("|=_~¦")
OCR_TIMEOUT_S = 60
OCR_EXPONENT = re.compile(r"^([0-9lIO]+(?:\.[0-9]+)?)e([~—–\-−])([0-9]{1,3})$")
OCR_SCRIPT_EXPONENT = re.compile(r"^([0-9lIO]+(?:\.[0-9]+)?)e([⁻⁺]?[⁰¹²³⁴⁵⁶⁷⁸⁹]+)$")
OCR_DIGITS = str.maketrans("lIO", "110")
OCR_WARNING = "printed as glyph outlines (no text layer): read by OCR from its drawn paths, check the numbers"


@dataclass
class Run:
    """Filled paths drawn side by side (one word run of the table) and how they are read."""
    paths: list[dict]
    bbox: tuple[float, float, float, float]
    kind: str  # "body", "script" or "dash"
    raised: bool = False
    """A dash set high beside the word before it: the minus of an exponent."""

    @property
    def height(self) -> float:
        return self.bbox[3] - self.bbox[1]


def outlined_table(page: pymupdf.Page, caption: Sequence[Line], lines: Sequence[Line],
                   rules: Sequence[tuple[float, float, float]], verticals: Sequence[tuple[float, float, float]],
                   page_words: Sequence[tuple]) -> Grid | None:
    """The table next to `caption` read from its outlines, or None (text beside the caption, no outlines, no
    Tesseract)."""
    if not ocr_available():
        return None
    import pymupdf

    # Raw drawings (tuples, no Python objects per point): a table of outlines holds tens of thousands of segments.
    filled = [{**d, "rect": pymupdf.Rect(d["rect"])} for d in page.get_cdrawings() if "f" in (d.get("type") or "")]
    for below in (True, False):
        area = _outline_block(page, caption, lines, page_words, filled, below)
        if area is None:
            continue
        x0, y0, x1, y1 = area
        words = outline_words([d for d in filled if _inside(d["rect"], area)])
        inside = [(y, a, b) for y, a, b in rules if y0 - 4 <= y <= y1 + 4 and b > x0 and a < x1]
        cuts = sorted({round(x, 1) for x, _, _ in _column_rules(verticals, area)})
        rows = rows_of(words)
        for row in rows:
            for word in row.words:
                word.text = _exponent_fixed(word.text)
        grid = build_grid(rows, inside, cuts, known_table=True)  # outlines under a caption: no prose
        if grid is not None:
            return grid
    return None


def _inside(rect: pymupdf.Rect, area: tuple[float, float, float, float]) -> bool:
    return area[0] <= rect.x0 and rect.x1 <= area[2] and area[1] <= rect.y0 and rect.y1 <= area[3]


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
                   filled: Sequence[dict], below: bool) -> tuple[float, float, float, float] | None:
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
    paths = [d["rect"] for d in filled if y0 <= d["rect"].y0 and d["rect"].y1 <= y1
             and d["rect"].height < 0.5 * (y1 - y0)]
    if len(paths) < MIN_OUTLINE_PATHS:
        return None
    return (min(r.x0 for r in paths) - 2, min(r.y0 for r in paths) - 2,
            max(r.x1 for r in paths) + 2, max(r.y1 for r in paths) + 2)


def glyph_runs(paths: Sequence[dict]) -> list[Run]:
    """The table's filled paths as runs, left to right: a path that touches a body run on its line joins it (bold
    text is drawn glyph by glyph, its points and hyphens too), a path raised or lowered beside its left neighbour
    (or small) stands apart as a script, a flat one as a dash; a speck on its own (a comma drawn apart) is dropped."""
    paths = _glyph_paths(paths)
    heights = [d["rect"].height for d in paths if d["rect"].height >= 1.0]
    if not heights:
        return []
    # The usual height of a capital or digit (with or without descenders): x-height glyphs of text drawn glyph by
    # glyph and the scripts are left out.
    usual = median(h for h in heights if h >= 0.65 * max(heights))
    runs: list[Run] = []
    for path in sorted(paths, key=lambda d: d["rect"].x0):
        r = path["rect"]
        flat = r.height < DASH_HEIGHT * usual and r.width >= 1.5 * r.height
        left = next((run for run in reversed(runs) if -0.5 < r.x0 - run.bbox[2] < JOIN_GAP * usual
                     and min(r.y1, run.bbox[3]) > max(r.y0, run.bbox[1])), None)
        relation = _relation(left, r, flat, usual) if left is not None else ""
        if left is not None and relation == "join":
            left.paths.append(path)
            left.bbox = (left.bbox[0], min(left.bbox[1], r.y0), max(left.bbox[2], r.x1), max(left.bbox[3], r.y1))
            continue
        if flat:
            kind = "dash"
        elif r.height < SPECK_HEIGHT * usual:
            continue
        else:
            kind = "script" if relation == "script" or r.height < MARK_HEIGHT * usual else "body"
        runs.append(Run([path], (r.x0, r.y0, r.x1, r.y1), kind, raised=flat and relation == "raised"))
    return runs


def _glyph_paths(paths: Sequence[dict]) -> list[dict]:
    """The paths that draw glyphs: not a rule drawn as a filled bar (wider than any dash) nor a shaded box behind
    cells (taller than a line, with other paths inside it)."""
    heights = sorted(d["rect"].height for d in paths if d["rect"].height >= 1.0)
    if not heights:
        return list(paths)
    line = heights[len(heights) // 2]
    kept = []
    for d in paths:
        r = d["rect"]
        if r.height < DASH_HEIGHT * line and r.width > 3 * line:
            continue  # a rule (an em dash is about 1.3 line heights wide)
        if r.height > 1.6 * line and sum(1 for o in paths if o is not d and r.contains(o["rect"])) >= 2:
            continue  # a box or shading behind cells
        kept.append(d)
    return kept


def _relation(run: Run, r: pymupdf.Rect, flat: bool, usual: float) -> str:
    """How path `r`, just right of `run` on its line, relates to it: "join" (the same word), "script" (a
    super/subscript set beside it), "raised" (a dash set high beside it: an exponent's minus) or "" (a new
    word)."""
    top = min(p["rect"].y0 for p in run.paths)
    base = median(p["rect"].y1 for p in run.paths)
    if run.kind == "dash":  # the digits after a raised minus are its exponent
        return "script" if run.raised and not flat and r.height < usual else ""
    if run.kind == "script":
        return "join" if not flat and abs(r.y1 - base) < 0.15 * usual else ""
    if flat:  # a hyphen sits in the lower part of the line; a raised minus (of a superscript) higher
        return "join" if (r.y0 + r.y1) / 2 > top + 0.4 * (base - top) else "raised"
    raised = r.y1 < base - 0.25 * usual
    lowered = SPECK_HEIGHT * usual <= r.height < SCRIPT_HEIGHT * usual and r.y0 > top + 0.45 * (base - top) \
        and r.y1 > base + 0.1 * usual
    return "script" if raised or lowered else "join"


def outline_words(paths: Sequence[dict]) -> list[Word]:
    """Words of a table drawn as outlines, in page coordinates with font size, baseline and weight."""
    runs = glyph_runs(paths)
    readable = [r for r in runs if r.kind != "dash"]
    if not readable:
        return []
    usual = median(r.height for r in readable if r.kind == "body") if any(r.kind == "body" for r in readable) \
        else median(r.height for r in readable)
    # A run drawn again with the same shape ("Adam", "8", "Cross-entropy" down a column) reads the same: it goes
    # on the sheet once.
    sheet_index: dict[str, int] = {}
    which = [sheet_index.setdefault(_shape_key(r), len(sheet_index)) for r in readable]
    first = {k: i for i, k in reversed(list(enumerate(which)))}
    sheet_runs = [readable[first[k]] for k in range(len(sheet_index))]
    zooms = [1.0 if r.kind == "body" else min(usual / r.height, MAX_SCRIPT_ZOOM) for r in sheet_runs]
    read: dict[int, list[tuple[str, tuple[float, float, float, float], str]]] = defaultdict(list)
    strokes: list[float] = []
    for start in range(0, len(sheet_runs), SHEET_RUNS):  # a very large table goes on several sheets
        chunk = range(start, min(start + SHEET_RUNS, len(sheet_runs)))
        strokes += _read_sheet([sheet_runs[k] for k in chunk], [zooms[k] for k in chunk], usual, start, read)
    body_heights = [b[3] - b[1] for k, ws in read.items() if sheet_runs[k].kind == "body" for _, b, _ in ws]
    if not body_heights:
        return []
    size = median(body_heights) / CAP_HEIGHT_EM
    body_strokes = [s for s, r in zip(strokes, sheet_runs, strict=True) if s > 0 and r.kind == "body"]
    usual_stroke = median(body_strokes) if body_strokes else 0.0
    words: list[Word] = []
    for run, k in zip(readable, which, strict=True):
        placed = [(text, (run.bbox[0] + b[0], run.bbox[1] + b[1], run.bbox[0] + b[2], run.bbox[1] + b[3]), line)
                  for text, b, line in read.get(k, [])]
        # Scripts are enlarged on the sheet, their strokes with them: only body runs are weighed.
        weight = 4 if run.kind == "body" and usual_stroke and strokes[k] > BOLD_STROKE * usual_stroke else 1
        if run.kind == "script":
            words += [Word(text, bbox, size * run.height / usual, run.bbox[3], weight, False)
                      for text, bbox, _ in placed]
            continue
        # The baseline of an OCR line: its highest word bottom (words with descenders or brackets reach lower).
        bases: dict[str, float] = {}
        for _, bbox, line in placed:
            bases[line] = min(bases.get(line, bbox[3]), bbox[3])
        words += [Word(text, bbox, size, bases[line], weight, False) for text, bbox, line in placed]
    return words + _dash_words([r for r in runs if r.kind == "dash"], words, size)


def _read_sheet(runs: Sequence[Run], zooms: Sequence[float], usual: float, first: int,
                read: dict[int, list[tuple[str, tuple[float, float, float, float], str]]]) -> list[float]:
    """OCR one sheet of runs: adds to `read`, under each run's index (`first` + its place), the words read in it
    as (text, box relative to the run's corner in page units, OCR line); returns the runs' stroke widths."""
    pix, origins = _sheet(runs, zooms, usual)
    scale = OCR_DPI / 72
    tops = [oy for _, oy in origins]
    for text, (left, top, right, bottom), line in _tesseract(pix.tobytes("png")):
        cy = (top + bottom) / 2 / scale
        k = bisect_right(tops, cy + 2) - 1  # the last run starting above the word's middle
        if k < 0 or cy > tops[k] + runs[k].height * zooms[k] + 2:
            continue
        (ox, oy), zoom = origins[k], zooms[k]
        read[first + k].append((text, ((left / scale - ox) / zoom, (top / scale - oy) / zoom,
                                       (right / scale - ox) / zoom, (bottom / scale - oy) / zoom), line))
    return _stroke_widths(pix, runs, zooms, origins)


def _shape_key(run: Run) -> str:
    """The run's drawing relative to its corner (to 0.05 pt) and its kind: equal keys print the same text."""
    x0, y0 = run.bbox[0], run.bbox[1]
    numbers: list[float] = []
    for path in run.paths:
        for item in path["items"]:
            for part in item[1:]:  # points (x, y), a rect (x0, y0, x1, y1), a quad of points; not the orientation
                if isinstance(part, tuple):
                    numbers += [v for p in part for v in p] if isinstance(part[0], tuple) else list(part)
    return run.kind + ":" + " ".join(str(round((v - (y0 if i % 2 else x0)) * 20)) for i, v in enumerate(numbers))


def _dash_words(dashes: Sequence[Run], words: Sequence[Word], size: float) -> list[Word]:
    """Dashes read by their shape: a sign set just before a script word is that script's (a raised minus), else
    a dash of the body size on the math axis (an empty cell "-")."""
    out: list[Word] = []
    for dash in dashes:
        x0, y0, x1, y1 = dash.bbox
        cy = (y0 + y1) / 2
        script = next((w for w in words if w.size < size * SCRIPT_HEIGHT * 1.1 and 0 <= w.bbox[0] - x1 < 0.3 * size
                       and w.bbox[1] <= cy <= w.bbox[3]), None)
        if script is not None:
            out.append(Word("-", dash.bbox, script.size, script.baseline, script.weight, False))
        else:
            out.append(Word("-", dash.bbox, size, cy + 0.25 * size, 1, False))
    return out


def _sheet(runs: Sequence[Run], zooms: Sequence[float], usual: float):
    """Each run redrawn alone on its own line of a blank page (scripts enlarged), rendered in grey for OCR; the
    origin of each run on that page. The paths go straight into the page's content stream (PDF operators)."""
    import pymupdf

    width = max((r.bbox[2] - r.bbox[0]) * z for r, z in zip(runs, zooms, strict=True)) + 2 * SHEET_MARGIN_PT
    height = sum(r.height * z + LINE_GAP * usual for r, z in zip(runs, zooms, strict=True)) + 2 * SHEET_MARGIN_PT
    origins: list[tuple[float, float]] = []
    ops: list[str] = ["0 g"]
    y = SHEET_MARGIN_PT
    for run, zoom in zip(runs, zooms, strict=True):
        ox, oy = SHEET_MARGIN_PT, y
        x0, y0 = run.bbox[0], run.bbox[1]

        def move(p: Sequence[float], x0: float = x0, y0: float = y0, zoom: float = zoom, ox: float = ox,
                 oy: float = oy) -> str:
            return f"{(p[0] - x0) * zoom + ox:.3f} {height - ((p[1] - y0) * zoom + oy):.3f}"  # PDF's y runs up

        for path in run.paths:
            ops += _path_ops(path, move)
        origins.append((ox, oy))
        y += run.height * zoom + LINE_GAP * usual
    doc = pymupdf.open()
    page = doc.new_page(width=width, height=height)
    xref = doc.get_new_xref()
    doc.update_object(xref, "<<>>")
    doc.update_stream(xref, "\n".join(ops).encode())
    page.set_contents(xref)
    return page.get_pixmap(dpi=OCR_DPI, colorspace=pymupdf.csGRAY), origins


def _path_ops(path: dict, move) -> list[str]:
    """PDF operators that fill one drawn path again (black), its points placed by `move`."""
    ops: list[str] = []
    last = None
    for item in path["items"]:
        if item[0] in ("l", "c"):
            if item[1] != last:
                ops.append(f"{move(item[1])} m")
            ops.append(f"{move(item[2])} l" if item[0] == "l" else f"{move(item[2])} {move(item[3])} {move(item[4])} c")
            last = item[-1]
        elif item[0] == "re":
            x0, y0, x1, y1 = item[1]
            ops += [f"{move((x0, y0))} m", f"{move((x1, y0))} l", f"{move((x1, y1))} l", f"{move((x0, y1))} l", "h"]
            last = None
        elif item[0] == "qu":
            ul, ur, ll, lr = item[1]  # a quad lists its corners as ul, ur, ll, lr
            ops += [f"{move(ul)} m", f"{move(ur)} l", f"{move(lr)} l", f"{move(ll)} l", "h"]
            last = None
    ops.append("f*" if path.get("even_odd") else "f")
    return ops


def _tesseract(png: bytes) -> list[tuple[str, tuple[float, float, float, float], str]]:
    """(text, pixel box, line key) of each word Tesseract reads on the sheet (one uniform block: psm 6)."""
    # One thread: on a table-sized image Tesseract's OpenMP threads cost more CPU than they save.
    result = subprocess.run(["tesseract", "stdin", "stdout", "--psm", "6", "tsv"], input=png,
                            capture_output=True, timeout=OCR_TIMEOUT_S, check=False,
                            env={**os.environ, "OMP_THREAD_LIMIT": "1"})
    boxes = []
    for row in csv.DictReader(io.StringIO(result.stdout.decode("utf-8", "replace")), delimiter="\t",
                              quoting=csv.QUOTE_NONE):
        text = (row.get("text") or "").strip()
        if row.get("level") != "5" or not text or set(text) <= RULE_MARKS:
            continue
        left, top, width, height = (float(row[k]) for k in ("left", "top", "width", "height"))
        boxes.append((text, (left, top, left + width, top + height),
                      f"{row['block_num']}.{row['par_num']}.{row['line_num']}"))
    return boxes


def _stroke_widths(pix, runs: Sequence[Run], zooms: Sequence[float], origins: Sequence[tuple[float, float]]
                   ) -> list[float]:
    """The stroke width of each run on the sheet (every run set at body size), in points: bold strokes are wider."""
    import numpy as np

    scale = OCR_DPI / 72
    ink = np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.height, pix.stride)[:, :pix.width] < 128
    widths = []
    for run, zoom, (ox, oy) in zip(runs, zooms, origins, strict=True):
        x0, y0 = int(ox * scale), int(oy * scale)
        x1, y1 = int((ox + (run.bbox[2] - run.bbox[0]) * zoom) * scale) + 1, int((oy + run.height * zoom) * scale) + 1
        widths.append(stroke_width(ink[y0:y1, x0:x1]) / scale)
    return widths


def stroke_width(ink: np.ndarray) -> float:
    """Mean over the ink pixels of the shorter of their horizontal and vertical ink runs: a stem's width, a
    hairline's thickness (a run along a hairline or down a stem is its length, not its width); the mean, not the
    median, because the runs are a few whole pixels."""
    import numpy as np

    if ink.size == 0 or not ink.any():
        return 0.0
    shorter = np.minimum(_run_lengths(ink), _run_lengths(ink.T).T)
    return float(np.mean(shorter[ink]))


def _run_lengths(ink: np.ndarray) -> np.ndarray:
    """Each pixel's horizontal run length of ink (0 off the ink)."""
    import numpy as np

    flat = np.pad(ink, ((0, 0), (1, 1))).astype(np.int8)
    edges = np.diff(flat, axis=1)
    rows_s, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)
    out = np.zeros(ink.shape, dtype=np.int32)
    for r, a, b in zip(rows_s, starts, ends, strict=True):
        out[r, a:b] = b - a
    return out


def _exponent_fixed(text: str) -> str:
    """A number in e-notation as OCR reads it: a leading 1 as "l" or "I", a 0 as "O" ("le⁻⁵"); an inline raised
    minus as "~" or a dash ("2.5e—4"): between the "e" and the exponent only a sign can stand, so it is read as a
    minus. Without such a mark the text stays as read (a lost minus would make 1e⁻⁴ read 1e4)."""
    script = OCR_SCRIPT_EXPONENT.match(text)
    if script:
        return f"{script.group(1).translate(OCR_DIGITS)}e{script.group(2)}"
    match = OCR_EXPONENT.match(text)
    if not match:
        return text
    mantissa = match.group(1).translate(OCR_DIGITS)
    return f"{mantissa}e-{match.group(3)}"
