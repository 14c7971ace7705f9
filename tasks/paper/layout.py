"""Text lines of a page in reading order (two-column aware), and their roles: headings, captions, equations.

Reading order: lines that cross the page's vertical middle are full-width and cut the page into bands; inside a
band the left column is read before the right one. Single-column pages are all full-width lines, so they keep
their top-to-bottom order."""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:
    import pymupdf

BOLD_FLAG = 16
ITALIC_FLAG = 2
GUTTER_PT = 12.0
"""How far a line may cross the page's middle and still count as a left-column line."""

KNOWN_HEADINGS = {
    "abstract", "introduction", "related work", "background", "method", "methods", "experiments", "results",
    "discussion", "conclusion", "conclusions", "acknowledgments", "acknowledgements", "references",
    "bibliography", "appendix",
}
REFERENCE_HEADINGS = {"references", "bibliography"}
NUMBERED_HEADING = re.compile(r"^(?:\d+(?:\.\d+)*\.?|[IVX]+\.|[A-Z]\.)\s+[A-Z][^.]{1,80}$")
CAPTION = re.compile(r"^(Table|Figure|Fig\.)\s*(\d+|[IVX]+)\s*[:.]", re.IGNORECASE)
EQUATION_NUMBER = re.compile(r"^\((\d+[a-z]?)\)$")
MATH_CHARS = set("=≤≥≈∑∏∫√∂∇±×·→←∈∉⊂⊆∀∃αβγδεθλμσφψωΣΠΔ∞")


@dataclass
class Line:
    page: int
    bbox: tuple[float, float, float, float]
    text: str
    size: float
    bold: bool
    italic: bool
    column: str = "full"

    @property
    def center(self) -> tuple[float, float]:
        return ((self.bbox[0] + self.bbox[2]) / 2, (self.bbox[1] + self.bbox[3]) / 2)


def page_lines(page: "pymupdf.Page", textpage: "pymupdf.TextPage | None" = None) -> list[Line]:
    """Non-empty text lines of a page with their dominant font properties."""
    data = page.get_text("dict", textpage=textpage) if textpage else page.get_text("dict")
    lines: list[Line] = []
    for block in data["blocks"]:
        if block.get("type") != 0:
            continue
        for raw in block["lines"]:
            spans = [s for s in raw["spans"] if s["text"].strip()]
            if not spans:
                continue
            text = " ".join("".join(s["text"] for s in raw["spans"]).split())
            main = max(spans, key=lambda s: len(s["text"]))
            lines.append(Line(
                page=page.number,
                bbox=tuple(round(v, 2) for v in raw["bbox"]),
                text=text,
                size=round(main["size"], 1),
                bold=bool(main["flags"] & BOLD_FLAG) or "bold" in main["font"].lower(),
                italic=bool(main["flags"] & ITALIC_FLAG) or "italic" in main["font"].lower(),
            ))
    return lines


def reading_order(lines: Sequence[Line], page_width: float) -> list[Line]:
    """Lines sorted for reading: bands cut by full-width lines, left column before right column."""
    mid = page_width / 2
    for line in lines:
        x0, _, x1, _ = line.bbox
        if x1 <= mid + GUTTER_PT:
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
    bare = re.sub(r"^(?:\d+(?:\.\d+)*\.?|[IVX]+\.|[A-Z]\.)\s+", "", text).strip().lower()
    if bare in KNOWN_HEADINGS:
        return emphasised or text.isupper() or text == bare.title()
    if re.match(r"^[A-Z]\.\s", text) and not line.bold:
        return False  # "C. Author, University" is a byline, not appendix section C
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
    """A displayed formula: short, with math symbols, not a sentence of words."""
    text = line.text.strip()
    if len(text) > 140 or not any(ch in MATH_CHARS for ch in text):
        return False
    words = re.findall(r"[A-Za-z]{4,}", text)
    return len(words) <= 3 and not text.endswith(".")


def equation_number_for(line: Line, lines: Sequence[Line]) -> Line | None:
    """The "(n)" label on the same row as an equation line, if any."""
    y = line.center[1]
    for other in lines:
        if other is not line and EQUATION_NUMBER.match(other.text.strip()) and abs(other.center[1] - y) < 4:
            return other
    return None
