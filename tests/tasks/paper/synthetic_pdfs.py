"""Synthetic papers made with PyMuPDF, with a known ground truth, and malformed PDFs.

`write_paper(path)` lays out a two-column paper: a full-width title, four numbered sections, an equation, a ruled
table with decimals and negatives, a raster figure and a vector figure (each with a caption) and a references
section. `PAPER` holds what ingestion must find. The malformed writers produce the cases ingestion must refuse
with a named error."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pymupdf

PAGE_W, PAGE_H = 612, 792
LEFT = pymupdf.Rect(50, 120, 296, 760)
RIGHT = pymupdf.Rect(316, 120, 562, 760)


@dataclass(frozen=True)
class Truth:
    title: str
    sections: tuple[str, ...]
    equation_text: str
    table_header: tuple[str, ...]
    table_rows: tuple[tuple[str, ...], ...]
    table_caption: str
    figure_captions: tuple[str, ...]
    references: tuple[str, ...]
    sentence_numbers: tuple[float, ...]


PAPER = Truth(
    title="Tiny Linear Regression Revisited",
    sections=("Abstract", "1 Introduction", "2 Method", "3 Experiments", "4 Conclusion"),
    equation_text="y = w x + b",
    table_header=("Method", "MSE", "Delta"),
    table_rows=(("Baseline", "1.50", "-0.30"), ("Ours", "0.25", "-1.55"), ("Oracle", "0.04", "-1.71")),
    table_caption="Table 1: Test mean squared error of the three fits.",
    figure_captions=(
        "Figure 1: Raster heat map of the residuals.",
        "Figure 2: Vector plot of the loss per epoch.",
    ),
    references=("[1] A. Gauss. Least squares. 1809.", "[2] B. Legendre. New methods. 1805."),
    sentence_numbers=(0.25, 83.4, 200.0),
)

INTRO = ("Linear regression is the oldest learning method. We revisit it on a synthetic data set "
         "and report the error of three fits. ") * 3
METHOD = ("We fit the weights by ordinary least squares on noisy samples of a line. "
          "The model is written as the equation below. ") * 2
EXPERIMENTS = ("We draw 200 training points. Our fit reaches a test mean squared error of 0.25 "
               "and explains 83.4 percent of the variance. Table 1 lists all fits.")
CONCLUSION = "Least squares still works. Figure 1 and Figure 2 show the residuals and the loss curve."


def _heading(page: pymupdf.Page, x: float, y: float, text: str) -> float:
    page.insert_text((x, y), text, fontname="hebo", fontsize=12)
    return y + 8


def _para(page: pymupdf.Page, col: pymupdf.Rect, y: float, text: str) -> float:
    """Wrapped body text in one column from y; returns the y below it."""
    rect = pymupdf.Rect(col.x0, y, col.x1, col.y1)
    spare = page.insert_textbox(rect, text, fontname="helv", fontsize=9)
    return col.y1 - spare + 14


def _table(page: pymupdf.Page, x: float, y: float) -> float:
    col_w, row_h = 78.0, 16.0
    rows = [PAPER.table_header, *PAPER.table_rows]
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            cell_rect = pymupdf.Rect(x + c * col_w, y + r * row_h, x + (c + 1) * col_w, y + (r + 1) * row_h)
            page.draw_rect(cell_rect, color=(0, 0, 0), width=0.6)
            page.insert_text((cell_rect.x0 + 4, cell_rect.y1 - 4), cell, fontname="helv", fontsize=9)
    return y + len(rows) * row_h + 12


def _raster(page: pymupdf.Page, rect: pymupdf.Rect) -> None:
    pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 48, 32), False)
    for yy in range(32):
        for xx in range(48):
            pix.set_pixel(xx, yy, (5 * xx, 8 * yy, 128))
    page.insert_image(rect, pixmap=pix)


def _vector_plot(page: pymupdf.Page, rect: pymupdf.Rect) -> None:
    shape = page.new_shape()
    shape.draw_line(rect.bl, rect.tl)
    shape.draw_line(rect.bl, rect.br)
    shape.finish(color=(0, 0, 0), width=1)
    points = [pymupdf.Point(rect.x0 + i * rect.width / 8, rect.y0 + rect.height * (1 - 0.9 / (i + 1))) for i in range(9)]
    shape.draw_polyline(points)
    shape.finish(color=(0.8, 0, 0), width=1.5)
    for i, h in enumerate((0.3, 0.5, 0.2)):
        bar = pymupdf.Rect(rect.x0 + 20 + i * 30, rect.y1 - h * rect.height, rect.x0 + 40 + i * 30, rect.y1)
        shape.draw_rect(bar)
    shape.finish(color=(0, 0, 0.6), fill=(0.6, 0.7, 1.0))
    shape.commit()


def write_paper(path: Path) -> Path:
    """The synthetic two-column paper of `PAPER` (2 pages)."""
    doc = pymupdf.open()
    doc.set_metadata({"title": PAPER.title, "author": "C. Test"})
    page = doc.new_page(width=PAGE_W, height=PAGE_H)
    page.insert_text((150, 70), PAPER.title, fontname="hebo", fontsize=18)
    page.insert_text((250, 95), "C. Test, Synthetic University", fontname="helv", fontsize=10)
    y = _heading(page, LEFT.x0, 135, "Abstract")
    y = _para(page, LEFT, y, "We show that least squares fits a noisy line with a test error of 0.25.")
    y = _heading(page, LEFT.x0, y + 4, "1 Introduction")
    y = _para(page, LEFT, y, INTRO)
    y = _heading(page, LEFT.x0, y + 4, "2 Method")
    y = _para(page, LEFT, y, METHOD)
    page.insert_text((LEFT.x0 + 60, y + 14), PAPER.equation_text, fontname="tiit", fontsize=11)
    page.insert_text((LEFT.x1 - 20, y + 14), "(1)", fontname="helv", fontsize=9)
    y = _heading(page, RIGHT.x0, 135, "3 Experiments")
    y = _para(page, RIGHT, y, EXPERIMENTS)
    page.insert_text((RIGHT.x0, y + 4), PAPER.table_caption, fontname="helv", fontsize=9)
    _table(page, RIGHT.x0, y + 12)

    page2 = doc.new_page(width=PAGE_W, height=PAGE_H)
    _raster(page2, pymupdf.Rect(60, 80, 280, 230))
    page2.insert_text((60, 248), PAPER.figure_captions[0], fontname="helv", fontsize=9)
    _vector_plot(page2, pymupdf.Rect(60, 290, 280, 440))
    page2.insert_text((60, 462), PAPER.figure_captions[1], fontname="helv", fontsize=9)
    y = _heading(page2, RIGHT.x0, 90, "4 Conclusion")
    y = _para(page2, RIGHT, y, CONCLUSION)
    y = _heading(page2, RIGHT.x0, y + 4, "References")
    for ref in PAPER.references:
        page2.insert_text((RIGHT.x0, y + 10), ref, fontname="helv", fontsize=8)
        y += 14
    doc.save(path)
    return path


def write_encrypted(path: Path) -> Path:
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "secret results 0.5", fontname="helv")
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="user", owner_pw="owner")
    return path


def write_scanned(path: Path) -> Path:
    """A page that is only an image of text (no text layer), like a scanner's output."""
    src = pymupdf.open()
    src.new_page().insert_text((72, 100), "Scanned paper: accuracy 91.2 percent", fontname="helv", fontsize=14)
    pix = src[0].get_pixmap(dpi=100)
    doc = pymupdf.open()
    doc.new_page().insert_image(pymupdf.Rect(0, 0, 612, 792), pixmap=pix)
    doc.save(path)
    return path


def write_corrupt(path: Path) -> Path:
    path.write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >>\nthis is not a pdf body\n")
    return path


def write_empty(path: Path) -> Path:
    """A valid PDF whose single page holds nothing."""
    doc = pymupdf.open()
    doc.new_page()
    doc.save(path)
    return path


def write_long(path: Path, pages: int) -> Path:
    doc = pymupdf.open()
    for i in range(pages):
        doc.new_page().insert_text((72, 72), f"Page {i + 1} of a very long paper.", fontname="helv")
    doc.save(path)
    return path


EQUATION_TINY = "w = sum((x - mx) (y - my)) / sum((x - mx)^2)"


def write_tiny_paper(path: Path, slope: float, baseline: float, ours: float) -> Path:
    """A one-page, one-column paper whose numbers come from tiny_experiment.py: a reproduction can match it."""
    doc = pymupdf.open()
    page = doc.new_page(width=PAGE_W, height=PAGE_H)
    page.insert_text((72, 70), "Least Squares on a Noisy Line", fontname="hebo", fontsize=18)
    col = pymupdf.Rect(72, 100, 540, 760)
    y = _heading(page, 72, 110, "1 Method")
    y = _para(page, col, y, "We fit a line to twenty points x = 0, 0.1, ..., 1.9 with y = 2x + 1 plus an alternating "
                            "noise of size 0.5 (1 + x/4), by ordinary least squares, and compare with predicting the mean.")
    page.insert_text((200, y + 10), EQUATION_TINY, fontname="tiit", fontsize=11)
    page.insert_text((520, y + 10), "(1)", fontname="helv", fontsize=9)
    y = _heading(page, 72, y + 40, "2 Results")
    y = _para(page, col, y, f"The fitted slope is {slope:.3f}. Table 1 compares the errors.")
    page.insert_text((72, y + 4), "Table 1: Mean squared error.", fontname="helv", fontsize=9)
    rows = [("Method", "MSE", "Delta"), ("Baseline", f"{baseline:.3f}", "0.000"),
            ("Ours", f"{ours:.3f}", f"{ours - baseline:.3f}")]
    top = y + 12
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            cell_rect = pymupdf.Rect(72 + c * 80, top + r * 16, 72 + (c + 1) * 80, top + (r + 1) * 16)
            page.draw_rect(cell_rect, color=(0, 0, 0), width=0.6)
            page.insert_text((cell_rect.x0 + 4, cell_rect.y1 - 4), cell, fontname="helv", fontsize=9)
    plot = pymupdf.Rect(72, top + 80, 300, top + 230)
    _vector_plot(page, plot)
    page.insert_text((72, plot.y1 + 18), "Figure 1: The data and the fitted line.", fontname="helv", fontsize=9)
    doc.save(path)
    return path
