"""Words of a page area as a table needs them: from the characters with their font size, baseline, weight and
italic; super/subscripts joined to their word per printed line ("10⁴", "M₁^(h)"); rotated (upward) lines as one word
standing on its bottom edge."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tasks.paper.layout import MONO_FONT, SMALL_CAPS_GLYPHS, join_accents
from tasks.paper.numbers import SUBSCRIPTS, SUPERSCRIPTS

if TYPE_CHECKING:
    import pymupdf

BBox = tuple[float, float, float, float]
SCRIPT_SIZE = 0.85
"""A word smaller than this share of its row's font size, set above or below the baseline, is a super/subscript."""
TEX_EXTENSION_FONTS = ("cmex", "lmex", "mathex")
TEX_EXTENSION_DROP = 0.75
"""How far below a TeX extension glyph's origin the baseline of its line lies, in font sizes."""
FOOTNOTE_MARKS = "*†‡§¶⋆∗"
ITALIC_FONT = ("italic", "oblique", "cmti", "-it")
WEIGHTS = (("thin", 0), ("light", 0), ("semibold", 3), ("demibold", 3), ("medium", 2), ("extrabold", 4),
           ("bold", 4), ("black", 4), ("heavy", 4), ("cmbx", 4), ("cmb", 4))
"""Font weight from the font name; "regular", "book", "roman" and Computer Modern's CMR are 1."""


def font_weight(font: str, flags: int) -> int:
    name = font.lower()
    weight = next((w for key, w in WEIGHTS if key in name), 1)
    return max(weight, 4 if flags & 16 else 0)

@dataclass
class Word:
    text: str
    bbox: BBox
    size: float
    baseline: float
    weight: int
    italic: bool
    bold: bool = False
    """Heavier than the table's body text (set by `mark_bold`)."""
    mono: bool = False
    """Set in a monospaced (typewriter) font: code, whose spaces are a full character wide."""

    @property
    def cy(self) -> float:
        return (self.bbox[1] + self.bbox[3]) / 2


@dataclass
class Row:
    words: list[Word] = field(default_factory=list)
    baseline: float = 0.0
    size: float = 0.0

    @property
    def top(self) -> float:
        return min(w.bbox[1] for w in self.words)


def words_in(page: pymupdf.Page, area: BBox) -> list[Word]:
    """The words inside `area` from its characters, with font size, baseline and bold/italic."""
    import pymupdf

    words: list[Word] = []
    data = page.get_text("rawdict", clip=pymupdf.Rect(area), flags=pymupdf.TEXT_PRESERVE_WHITESPACE)
    for block in data["blocks"]:
        for line in block.get("lines", []):
            if abs(line["dir"][0]) < 0.5:  # set rotated (a column header printed upwards): one word per line
                _rotated_word(line, area, words)
                continue
            current: list[tuple[dict, dict]] = []
            for span in line["spans"]:
                for char in span["chars"]:
                    cx, cy = (char["bbox"][0] + char["bbox"][2]) / 2, (char["bbox"][1] + char["bbox"][3]) / 2
                    if not (area[0] <= cx <= area[2] and area[1] <= cy <= area[3]):
                        continue  # the clip also returns characters that only touch the area
                    if char["c"].isspace():
                        _flush(current, words)
                        current = []
                        continue
                    if current and (current[-1][0]["size"] != span["size"]
                                    or abs(current[-1][0]["origin"][1] - span["origin"][1]) > 0.5):
                        _flush(current, words)  # a super/subscript is its own word, joined back per row
                        current = []
                    current.append((span, char))
            _flush(current, words)
    return words


def _rotated_word(line: dict, area: BBox, words: list[Word]) -> None:
    """A rotated line (vertical text) as one word standing on its bottom edge: the headers of a table whose
    column titles are set upwards share a baseline there and so form one header row."""
    chars = [(span, c) for span in line["spans"] for c in span["chars"]
             if area[0] <= (c["bbox"][0] + c["bbox"][2]) / 2 <= area[2] and area[1] <= (c["bbox"][1] + c["bbox"][3]) / 2 <= area[3]]
    text = " ".join("".join(c["c"] for _, c in chars).split())
    if not text:
        return
    span = max(line["spans"], key=lambda sp: len(sp["chars"]))
    x0, y0 = min(c["bbox"][0] for _, c in chars), min(c["bbox"][1] for _, c in chars)
    x1, y1 = max(c["bbox"][2] for _, c in chars), max(c["bbox"][3] for _, c in chars)
    words.append(Word(join_accents(text.translate(SMALL_CAPS_GLYPHS)), (x0, y0, x1, y1), span["size"], y1,
                      font_weight(span["font"].lower(), span["flags"]), bool(span["flags"] & 2)))


def _flush(chars: list[tuple[dict, dict]], words: list[Word]) -> None:
    if not chars:
        return
    span = chars[0][0]
    font = span["font"].lower()
    # TeX's extension font (cmex: ∑, ∫, big brackets) puts a glyph's origin at its top, 0.75 em above the
    # baseline when centred on the math axis: its row is found from the baseline of the text around it.
    drop = TEX_EXTENSION_DROP * span["size"] if any(k in font for k in TEX_EXTENSION_FONTS) else 0.0
    words.append(Word(
        text=join_accents("".join(c["c"] for _, c in chars).translate(SMALL_CAPS_GLYPHS)),
        bbox=(min(c["bbox"][0] for _, c in chars), min(c["bbox"][1] for _, c in chars),
              max(c["bbox"][2] for _, c in chars), max(c["bbox"][3] for _, c in chars)),
        size=span["size"],
        baseline=span["origin"][1] + drop,
        weight=font_weight(font, span["flags"]),
        italic=bool(span["flags"] & 2) or any(k in font for k in ITALIC_FONT),
        mono=bool(span["flags"] & 8) or bool(MONO_FONT.search(font)),
    ))


def rows_of(words: Sequence[Word]) -> list[Row]:
    """Printed lines: full-size words grouped by baseline, then super/subscripts joined to the word before them."""
    if not words:
        return []
    big = max(w.size for w in words)
    main = [w for w in words if w.size >= SCRIPT_SIZE * big]
    rows: list[Row] = []
    for word in sorted(main, key=lambda w: w.baseline):
        if rows and abs(word.baseline - rows[-1].baseline) < 0.3 * word.size:
            rows[-1].words.append(word)
        else:
            rows.append(Row([word], word.baseline, word.size))
    for row in rows:
        row.size = max(w.size for w in row.words)
    for word in (w for w in words if w.size < SCRIPT_SIZE * big):
        row = min(rows, key=lambda r: abs(r.baseline - 0.3 * r.size - word.cy))
        if word.size >= SCRIPT_SIZE * row.size:
            row.words.append(word)  # a row set in a smaller font (a table footnote line)
            continue
        raised = word.baseline < row.baseline - 0.15 * row.size
        lowered = word.baseline > row.baseline + 0.1 * row.size
        if raised or lowered:
            word.text = _script(word.text, SUPERSCRIPTS if raised else SUBSCRIPTS, "^" if raised else "_")
        row.words.append(word)
    for row in rows:
        row.words = _join_scripts(sorted(row.words, key=lambda w: w.bbox[0]))
    return rows


def _script(text: str, table: dict[int, int], mark: str) -> str:
    """Digits and signs as Unicode super/subscripts ("10" + "4" -> "10⁴"); other text as ^(...) / _(...)."""
    if all(ch.isdigit() or ch in "-+−" for ch in text):
        return text.replace("−", "-").translate(table)
    if all(ch in FOOTNOTE_MARKS for ch in text):
        return text  # "93.16†": a footnote mark stays a mark (the value still parses)
    return f"{mark}({text})"


def _join_scripts(words: list[Word]) -> list[Word]:
    """Glue a super/subscript to the word it touches."""
    out: list[Word] = []
    for word in words:
        scripted = word.text[:1] in "⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺₀₁₂₃₄₅₆₇₈₉₋₊" or word.text.startswith(("^(", "_("))
        if out and scripted and word.bbox[0] - out[-1].bbox[2] < 0.3 * out[-1].size:
            prev = out[-1]
            out[-1] = Word(prev.text + word.text, (prev.bbox[0], min(prev.bbox[1], word.bbox[1]),
                           max(prev.bbox[2], word.bbox[2]), max(prev.bbox[3], word.bbox[3])),
                           prev.size, prev.baseline, prev.weight, prev.italic, prev.bold)
        else:
            out.append(word)
    return out
