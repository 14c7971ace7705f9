"""Text lines of a page in reading order (two-column aware), and their roles: headings, captions, equations.

Reading order: lines that cross the page's vertical middle are full-width and cut the page into bands; inside a
band the left column is read before the right one. Single-column pages are all full-width lines, so they keep
their top-to-bottom order."""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pymupdf

BOLD_FLAG = 16
MONO_FLAG = 8
MONO_FONT = re.compile(r"mono|courier|CMTT|Consol|Menlo", re.IGNORECASE)
ITALIC_FLAG = 2
GUTTER_PT = 12.0
"""How far a line may cross the page's middle and still count as a left-column line."""
ROW_SIZE_RATIO = 0.6
"""Pieces of one printed row have font sizes within this ratio (a superscript piece is ~0.7 of its line)."""

KNOWN_HEADINGS = {
    "abstract", "introduction", "related work", "background", "method", "methods", "experiments", "results",
    "discussion", "conclusion", "conclusions", "acknowledgments", "acknowledgements", "acknowledgment",
    "acknowledgement", "references",
    "bibliography", "appendix",
}
REFERENCE_HEADINGS = {"references", "bibliography"}
SECTION_NUMBER = re.compile(r"^(?:Appendix\s+[A-Z](?:\.\d+)*[.:]?|\d+(?:\.\d+)*\.?|[IVX]+\.|[A-Z](?:\.\d+)*\.?)\s+")
"""A heading's number: "3", "3.1.", "IV.", appendix "A", "A.", "A.1", "Appendix E." (JMLR/PMLR) (a bare capital only where the outline or a
known name confirms the heading: "A Appendix", not "A model of...")."""
NUMBERED_HEADING = re.compile(r"^(?:Appendix\s+[A-Z](?:\.\d+)*[.:]?|\d+(?:\.\d+)*\.?|[IVX]+\.|[A-Z](?:\.\d+)+\.?|[A-Z]\.)\s+[A-ZΑ-Ω][^.]{1,80}$")
CAPITALS_HEADING = re.compile(r"^[A-Z]\.\s+[A-Z][A-Z0-9 ,:&–\-/()]{2,80}$")
"""A lettered sub-heading in capitals ("A. EVALUATION METRICS")."""
APPENDIX_HEADING = re.compile(r"^[A-Z]\s+[A-Z][^.]{1,80}$")
"""An appendix heading numbered by a bare letter ("A Significance Tests", "B Weight update equations")."""
CAPTION = re.compile(r"^(Table|Figure|Fig\.)\s*(\d+|[IVX]+)\s*[:.]", re.IGNORECASE)
NUMBER_PIECE = re.compile(r"^(?:\d+(?:\.\d+)*\.?|[A-Z](?:\.\d+)+\.?)$")
"""A heading's number set as a piece of its own ("2.3", "A.1")."""
EQUATION_NUMBER = re.compile(r"^\((\d+[a-z]?)\)$")
MATH_CHARS = set("=≤≥≈∑∏∫√∂∇±×·→←∈∉⊂⊆∀∃αβγδεθλμσφψωΣΠΔ∞")
MATH_FONT = re.compile(r"CMMI|CMSY|CMEX|MSBM|MSAM|Math|Symbol|STIX|rsfs|esint|LMMathItalic|LMMathSymbols", re.IGNORECASE)
"""Fonts that typeset formulas (TeX's math italic, symbols and extension fonts and their kin)."""
SMALL_CAPS_GLYPHS = str.maketrans({"ſ": "S", "ı": "I", "ĸ": "K", "‐": "-", "ʼ": "’"})
"""Small-caps fonts name their s, i and k glyphs long s, dotless i and kra; U+2010 is a plain hyphen and a
font's apostrophe named U+02BC (a modifier letter, which would join the word as a letter) is a right quote."""
SPACING_ACCENTS = {"¨": "\u0308", "´": "\u0301", "`": "\u0300", "ˆ": "\u0302", "˜": "\u0303", "¸": "\u0327", "˚": "\u030a"}
ACCENT_BEFORE_LETTER = re.compile("([" + "".join(SPACING_ACCENTS) + "])([A-Za-z])")


def join_accents(text: str) -> str:
    """TeX sets an accent as its own glyph before the letter ("T¨ackstr¨om"): one accented letter ("Täckström")."""
    if not any(a in text for a in SPACING_ACCENTS):
        return text
    return ACCENT_BEFORE_LETTER.sub(lambda m: unicodedata.normalize("NFC", m.group(2) + SPACING_ACCENTS[m.group(1)]), text)


PAGE_NUMBER = re.compile(r"^(?:page\s*)?(?:\d{1,4}|[ivxlc]{1,6})$", re.IGNORECASE)
MARGIN_SHARE = (0.07, 0.86)
"""Lines above 7% or below 86% of the page height that are only a number are page numbers."""
SIDE_MARGIN_SHARE = 0.08
"""So are lines of a number only in the outer 8 % at the left or right edge."""


@dataclass
class Line:
    page: int
    bbox: tuple[float, float, float, float]
    text: str
    size: float
    bold: bool
    italic: bool
    column: str = "full"
    math_share: float = 0.0
    """Share of the line's characters set in math fonts."""
    mono: bool = False
    """Set in a monospaced (code) font."""

    @property
    def center(self) -> tuple[float, float]:
        return ((self.bbox[0] + self.bbox[2]) / 2, (self.bbox[1] + self.bbox[3]) / 2)


def page_lines(page: pymupdf.Page, textpage: pymupdf.TextPage | None = None) -> list[Line]:
    """Non-empty text lines of a page with their dominant font properties; fragments of one row are merged
    (TeX sets a heading's number and title, or a bold phrase, as separate pieces) and page numbers dropped."""
    data = page.get_text("dict", textpage=textpage) if textpage else page.get_text("dict")
    lines: list[Line] = []
    for block in data["blocks"]:
        if block.get("type") != 0:
            continue
        for raw in block["lines"]:
            spans = [s for s in raw["spans"] if s["text"].strip()]
            if not spans:
                continue
            text = join_accents(" ".join("".join(s["text"] for s in raw["spans"]).split()).translate(SMALL_CAPS_GLYPHS))
            main = max(spans, key=lambda s: len(s["text"]))
            chars = sum(len(s["text"].strip()) for s in spans)
            math = sum(len(s["text"].strip()) for s in spans if MATH_FONT.search(s["font"]))
            lines.append(Line(
                page=page.number,
                bbox=_line_box(raw, main),
                text=text,
                size=round(main["size"], 1),
                bold=bool(main["flags"] & BOLD_FLAG) or "bold" in main["font"].lower() or "CMBX" in main["font"],
                italic=bool(main["flags"] & ITALIC_FLAG) or "italic" in main["font"].lower(),
                math_share=math / chars if chars else 0.0,
                mono=bool(main["flags"] & MONO_FLAG) or bool(MONO_FONT.search(main["font"])),
            ))
    height = page.rect.height
    # Page numbers are dropped after the row's pieces are joined: a heading's number low on the page ("2" of
    # "2 Key Ideas") is a piece of its row, not a page number.
    # A number alone at a side edge is one too: a page turned upright (a landscape table) has it there.
    lines = merge_rows(lines, page.rect.width / 2)
    width = page.rect.width
    return [ln for ln in lines if not (PAGE_NUMBER.match(ln.text) and (
        ln.bbox[3] < MARGIN_SHARE[0] * height or ln.bbox[1] > MARGIN_SHARE[1] * height
        or ln.bbox[2] < SIDE_MARGIN_SHARE * width or ln.bbox[0] > (1 - SIDE_MARGIN_SHARE) * width))]


def _line_box(raw: dict, main: dict) -> tuple[float, float, float, float]:
    """A line's box; where it is far lower than its font size (fonts embedded with a scaled matrix report boxes a
    third of the glyphs' height: AutoML's Libertine), the font's ascender and descender around the baseline."""
    x0, y0, x1, y1 = (float(v) for v in raw["bbox"])
    if abs(raw["dir"][0]) >= 0.5 and y1 - y0 < 0.6 * main["size"]:
        baseline = main["origin"][1]
        y0, y1 = baseline - main["ascender"] * main["size"], baseline - main["descender"] * main["size"]
    return round(x0, 2), round(y0, 2), round(x1, 2), round(y1, 2)


MARGIN_ZONE = 0.09
"""Running headers and footers sit in the top and bottom 9 % of the page."""
PLACED_ZONE = 0.12
"""Further in (to 12 %), a line counts as running furniture only where its text recurs at the same height."""
PLACED_TOLERANCE_PT = 3.0
LICENCE_LINE = re.compile(
    r"copyright\s*(?:©|\(c\))|©\s*\d{4}|creative commons|international licen[cs]e|licensed under|released under a|"
    r"permission to make digital|correspondence should be addressed|competing interests? exist|"
    r"^(?:edited by|reviewed by|received|accepted|published|doi|open peer review|keywords)\b",
    re.IGNORECASE,
)
"""Licence, copyright and editorial lines (a journal's side bar, a proceedings' copyright box): not body text."""


def running_lines(pages: Sequence[Sequence[Line]], heights: Sequence[float]) -> set[int]:
    """`id()` of running headers/footers: margin lines whose text (digits ignored) recurs on many pages, and lines
    a little further in ("Page 3 of 6" under a two-line citation header) whose text recurs at the same height."""
    def key(line: Line, height: float) -> str | None:
        text = re.sub(r"\d+", "#", line.text.strip().lower())
        if line.bbox[3] < MARGIN_ZONE * height or line.bbox[1] > (1 - MARGIN_ZONE) * height:
            return text
        if line.bbox[3] < PLACED_ZONE * height or line.bbox[1] > (1 - PLACED_ZONE) * height:
            return f"{text}@{round(line.bbox[1] / PLACED_TOLERANCE_PT)}"
        return None

    margin: list[tuple[Line, str]] = []
    pages_with: Counter[str] = Counter()
    for lines, height in zip(pages, heights, strict=True):
        keyed = [(ln, k) for ln in lines if (k := key(ln, height)) is not None]
        if len(keyed) < len(lines):  # a page of margin lines only is content, not furniture
            margin += keyed
        pages_with.update({k for _, k in keyed})
    needed = max(2, int(0.3 * len(pages)))
    return {id(ln) for ln, k in margin if pages_with[k] >= needed}


def is_licence(line: Line) -> bool:
    return bool(LICENCE_LINE.search(line.text))


def merge_rows(lines: Sequence[Line], mid: float) -> list[Line]:
    """Join pieces of one row that sit close together on the same side of the page's middle."""
    merged: list[Line] = []
    crossing = sum(1 for ln in lines if ln.bbox[0] < mid - GUTTER_PT and ln.bbox[2] > mid + GUTTER_PT)
    single_column = crossing >= 0.6 * max(len(lines), 1)
    for line in sorted(lines, key=lambda ln: (round(ln.center[1]), ln.bbox[0])):
        prev = merged[-1] if merged else None
        if prev is not None and _same_row(prev, line, None if single_column else mid) \
                and not EQUATION_NUMBER.match(line.text):
            merged[-1] = _join_lines(prev, line)
        else:
            merged.append(line)
    return merged


def _same_row(a: Line, b: Line, mid: float | None) -> bool:
    """Pieces of one printed line; on two-column pages (`mid` given) only on the same side of the middle."""
    height = min(a.bbox[3] - a.bbox[1], b.bbox[3] - b.bbox[1])
    gap = b.bbox[0] - a.bbox[2]
    # A heading's number and its title that runs past the middle are one row when the title starts left of the
    # middle ("2.3" then "Key Idea 1: ..." on a one-column page with figures beside the text).
    same_side = mid is None or (a.bbox[2] <= mid + GUTTER_PT) == (b.bbox[2] <= mid + GUTTER_PT) \
        or (b.bbox[0] < mid - GUTTER_PT and a.bold and b.bold and bool(NUMBER_PIECE.match(a.text)))
    # A much smaller neighbour is another block (a side bar's "Edited by" beside the heading "1 Introduction").
    alike = min(a.size, b.size) >= ROW_SIZE_RATIO * max(a.size, b.size)
    return abs(a.center[1] - b.center[1]) < 0.35 * height and -1 <= gap < 1.6 * max(a.size, b.size) \
        and same_side and alike


def _join_lines(a: Line, b: Line) -> Line:
    longer = a if len(a.text) >= len(b.text) else b
    chars = len(a.text) + len(b.text)
    return Line(
        page=a.page,
        bbox=(min(a.bbox[0], b.bbox[0]), min(a.bbox[1], b.bbox[1]), max(a.bbox[2], b.bbox[2]), max(a.bbox[3], b.bbox[3])),
        text=f"{a.text} {b.text}",
        size=longer.size,
        bold=a.bold and b.bold,
        italic=a.italic and b.italic,
        math_share=(a.math_share * len(a.text) + b.math_share * len(b.text)) / chars,
        mono=a.mono and b.mono,
    )


def reading_order(lines: Sequence[Line], page_width: float, full_above: float = 0.0) -> list[Line]:
    """Lines sorted for reading: bands cut by full-width lines, left column before right column. Lines above
    `full_above` (the title block of page 1: centred author names side by side) count as full-width."""
    mid = page_width / 2
    for line in lines:
        x0, _, x1, _ = line.bbox
        if line.bbox[3] <= full_above:
            line.column = "full"
        elif x1 <= mid + GUTTER_PT:
            line.column = "left"
        elif x0 >= mid - GUTTER_PT:
            line.column = "right"
        else:
            line.column = "full"
    ordered: list[Line] = []
    band: list[Line] = []
    for line in sorted(lines, key=lambda ln: (ln.bbox[1], ln.bbox[0])):
        if line.column == "full":
            ordered += _read_band(band)
            band = []
            ordered.append(line)
        else:
            band.append(line)
    return ordered + _read_band(band)


def _read_band(band: Iterable[Line]) -> list[Line]:
    key = lambda ln: (ln.bbox[1], ln.bbox[0])  # noqa: E731 - top to bottom, then left to right
    left = sorted((ln for ln in band if ln.column == "left"), key=key)
    right = sorted((ln for ln in band if ln.column == "right"), key=key)
    return left + right


def body_font_size(lines: Iterable[Line]) -> float:
    """The font size carrying the most characters: the body text."""
    sizes: Counter[float] = Counter()
    for line in lines:
        sizes[line.size] += len(line.text)
    return sizes.most_common(1)[0][0] if sizes else 10.0


def is_heading(line: Line, body_size: float) -> bool:
    """Section headings: short, emphasised (bold or larger than the body), numbered or a well-known name."""
    text = line.text.strip()
    if len(text) > 90 or CAPTION.match(text):
        return False
    emphasised = line.bold or line.size >= body_size + 1.5
    bare = SECTION_NUMBER.sub("", text).strip().lower()
    if bare in KNOWN_HEADINGS:
        return emphasised or text.isupper() or text == bare.title()
    if re.match(r"^[A-Z]\.\s", text) and not line.bold:
        # "C. Author, University" is a byline, not section C; IEEE sets its sub-headings in italic capitals.
        return line.italic and bool(CAPITALS_HEADING.match(text))
    if APPENDIX_HEADING.match(text):  # "A Significance Tests": a bare letter only when set larger and bold
        return line.bold and line.size >= body_size + 0.5
    return emphasised and bool(NUMBERED_HEADING.match(text))


def is_reference_heading(title: str) -> bool:
    bare = re.sub(r"^[\dIVX.]+\s+", "", title.strip()).lower()
    return bare in REFERENCE_HEADINGS


def caption_kind(text: str) -> tuple[str, str] | None:
    """("table" | "figure", number) when the text starts a caption."""
    match = CAPTION.match(text.strip())
    if not match:
        return None
    kind = "table" if match.group(1).lower() == "table" else "figure"
    return kind, match.group(2)


def looks_like_equation(line: Line) -> bool:
    """A piece of a displayed formula: short, mostly math (symbols or math fonts), not a sentence of words."""
    text = line.text.strip()
    if len(text) > 140 or EQUATION_NUMBER.match(text) or line.mono or ". . ." in text:
        return False  # code listings have "=" too; ". . ." is a table of contents' dot leader
    if line.bold and NUMBERED_HEADING.match(text):
        return False  # a numbered bold heading with a symbol in it ("3.4 Π-types")
    words = re.findall(r"[A-Za-z]{4,}", text)
    mathy = line.math_share >= 0.25 or any(ch in MATH_CHARS for ch in text)
    # A final period ends a sentence, or a displayed formula that closes a sentence ("a = b.").
    return len(words) <= 3 and mathy and not (text.endswith(".") and line.math_share < 0.25 and "=" not in text)


def caption_blocks(lines: Sequence[Line]) -> dict[int, tuple[str, list[Line]]]:
    """Captions that run over several lines: `id(first line)` -> (full text, its lines)."""
    ordered = sorted(lines, key=lambda ln: (ln.bbox[1], ln.bbox[0]))
    blocks: dict[int, tuple[str, list[Line]]] = {}
    for i, first in enumerate(ordered):
        if not caption_kind(first.text):
            continue
        parts = [first]
        # "Table 3." and its text can be separate pieces of one printed line (justified, across the middle).
        parts += sorted((other for other in ordered if other is not first
                         and abs(other.center[1] - first.center[1]) < 0.35 * first.size
                         and 0 <= other.bbox[0] - first.bbox[2] < 1.2 * first.size and not caption_kind(other.text)),
                        key=lambda ln: ln.bbox[0])
        hang: float | None = None
        for nxt in ordered[i + 1:]:
            last = parts[-1]
            if nxt.bbox[0] >= first.bbox[2] or nxt.bbox[2] <= first.bbox[0] or nxt.bbox[1] < last.bbox[1] + 1:
                continue  # the other column, or the same row
            # A caption's later lines start where its first line starts (a paragraph) or, hanging, where its text
            # starts after the label ("Table 3: Point..." over "metric) on 29..."); table rows do not.
            if hang is None and len(parts) == 1 and _hangs(first, nxt):
                hang = nxt.bbox[0]
            aligned = abs(nxt.bbox[0] - first.bbox[0]) <= 2.0 or (hang is not None and abs(nxt.bbox[0] - hang) <= 2.0)
            if nxt.bbox[1] - last.bbox[3] > 0.6 * last.size or caption_kind(nxt.text) \
                    or abs(nxt.size - first.size) > 0.5 or not aligned:
                break
            parts.append(nxt)
        blocks[id(first)] = (" ".join(p.text for p in parts), parts)
    return blocks


HANGING_TEXT_CHARS = 20
"""A hanging caption's first line holds at least this much text after its label."""


def _hangs(first: Line, nxt: Line) -> bool:
    """`nxt` is the second line of a hanging caption: the first line holds text after its label ("Table 3: Point
    forecast..."; a sentence's "Table 14." opening a line is no caption), and `nxt` starts where that text starts
    (about the label's width in)."""
    label = CAPTION.match(first.text)
    if label is None or len(first.text) < label.end() + HANGING_TEXT_CHARS:
        return False
    label_width = (first.bbox[2] - first.bbox[0]) * label.end() / len(first.text)
    return 2.0 < nxt.bbox[0] - first.bbox[0] and abs(nxt.bbox[0] - first.bbox[0] - label_width) <= 1.5 * first.size


def caption_text(block: tuple[str, list[Line]], area: Sequence[float]) -> str:
    """A caption block's text without lines inside `area` (a table's header row can sit right under it)."""
    x0, y0, x1, y1 = area
    parts = [ln.text for ln in block[1] if not (x0 <= ln.center[0] <= x1 and y0 <= ln.center[1] <= y1)]
    return " ".join(parts) or block[0]


def equation_number_for(line: Line, lines: Sequence[Line]) -> Line | None:
    """The "(n)" label on the same row as an equation line, if any."""
    y = line.center[1]
    for other in lines:
        if other is not line and EQUATION_NUMBER.match(other.text.strip()) and abs(other.center[1] - y) < 4:
            return other
    return None
