"""Pages set sideways (a landscape table on a portrait page: LaTeX's sidewaystable / landscape) are turned
upright before reading, as a reader turns the page: the page is redrawn rotated onto a fresh page of the same
number in an in-memory copy of the document, so its lines, words and rules come out horizontal and the layout,
caption and table code reads them like any other page. The PDF file itself is never changed. (Pages that carry
a /Rotate entry are left as they are.)"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pymupdf

VERTICAL_SHARE = 0.6
"""A page whose text is at least this share of characters in vertical lines is set sideways."""
MIN_CHARS = 200
"""Fewer characters than this (a figure's rotated axis label on an empty page) turn no page."""


def upright(doc: pymupdf.Document) -> pymupdf.Document:
    """`doc` itself when no page is set sideways, else an in-memory copy with those pages turned upright."""
    import pymupdf

    turns = {page.number: turn for page in doc.pages() if (turn := _turn(page))}
    if not turns:
        return doc
    out = pymupdf.open()
    out.insert_pdf(doc)
    out.set_toc(doc.get_toc())  # the outline confirms headings; the metadata may hold the title
    out.set_metadata(doc.metadata or {})
    for number, turn in turns.items():
        rect = doc[number].rect
        out.delete_page(number)
        page = out.new_page(pno=number, width=rect.height, height=rect.width)
        page.show_pdf_page(page.rect, doc, number, rotate=turn)
    return out


def _turn(page: pymupdf.Page) -> int:
    """The rotation that makes the page's text read left to right: -90 for text running upwards, 90 for text
    running downwards, 0 when most of the text is horizontal already (or the page has its own /Rotate)."""
    if page.rotation:
        return 0
    counts = {0: 0, -90: 0, 90: 0}
    for block in page.get_text("dict", flags=0)["blocks"]:
        for line in block.get("lines", []):
            dx, dy = line["dir"]
            key = 0 if abs(dx) >= 0.5 else (-90 if dy < 0 else 90)
            counts[key] += sum(len(span["text"].strip()) for span in line["spans"])
    total = sum(counts.values())
    turn = max((-90, 90), key=lambda k: counts[k])
    return turn if total >= MIN_CHARS and counts[turn] >= VERTICAL_SHARE * total else 0
