"""Opening a paper PDF safely: every way a PDF can be unusable becomes a named error, never a crash or an
empty result. Scanned pages are OCRed when Tesseract is installed."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.paper.errors import (
    CorruptPdfError,
    EmptyPdfError,
    EncryptedPdfError,
    PaperTooLongError,
    ScannedPdfError,
)

if TYPE_CHECKING:
    import pymupdf

DEFAULT_MAX_PAGES = 150
MIN_TEXT_CHARS_PER_PAGE = 20
"""Below this average the document is treated as having no text layer (a scan)."""


def open_pdf(path: Path, password: str | None = None, max_pages: int = DEFAULT_MAX_PAGES) -> pymupdf.Document:
    """Open and authenticate `path`; raise a named `PaperError` subclass when it cannot be used."""
    import pymupdf

    if not path.is_file():
        raise CorruptPdfError(f"{path}: no such file")
    head = path.read_bytes()[:1024]
    if not head:
        raise EmptyPdfError(f"{path}: the file is empty (0 bytes)")
    if b"%PDF" not in head:
        raise CorruptPdfError(f"{path}: not a PDF (no %PDF header in the first 1 KiB)")
    try:
        doc = pymupdf.open(path, filetype="pdf")
    except (pymupdf.FileDataError, RuntimeError) as exc:
        raise CorruptPdfError(f"{path}: cannot be parsed as a PDF ({exc})") from exc
    if doc.needs_pass and not doc.authenticate(password or ""):
        hint = "the password given is wrong" if password else "pass --password"
        raise EncryptedPdfError(f"{path}: the PDF is encrypted; {hint}")
    if doc.page_count == 0:
        raise CorruptPdfError(f"{path}: no readable pages (broken page tree)")
    if doc.page_count > max_pages:
        raise PaperTooLongError(
            f"{path}: {doc.page_count} pages exceed the limit of {max_pages}; raise --max-pages if intended"
        )
    return doc


def ocr_available() -> bool:
    """Tesseract is what PyMuPDF's OCR calls; without it scans cannot be read."""
    return shutil.which("tesseract") is not None


def text_layer_state(doc: pymupdf.Document) -> str:
    """"text" when the document has a usable text layer, "scanned" (images only) or "empty" (nothing)."""
    chars = sum(len(page.get_text("text").strip()) for page in doc.pages())
    if chars >= MIN_TEXT_CHARS_PER_PAGE * doc.page_count or chars >= 2000:
        return "text"
    has_images = any(page.get_images(full=False) for page in doc.pages())
    return "scanned" if has_images else ("text" if chars else "empty")


def check_usable(doc: pymupdf.Document, path: Path) -> bool:
    """Raise for empty documents and for scans without OCR; return True when OCR must be used."""
    state = text_layer_state(doc)
    if state == "empty":
        raise EmptyPdfError(f"{path}: {doc.page_count} page(s) with neither text nor images")
    if state == "scanned":
        if not ocr_available():
            raise ScannedPdfError(
                f"{path}: no text layer (a scanned paper) and no OCR engine; install Tesseract "
                "(apt-get install tesseract-ocr) and run again"
            )
        return True
    return False
