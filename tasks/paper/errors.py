"""Named errors of paper ingestion, grading and rubric handling. Each message says what is wrong and what to do."""
from __future__ import annotations


class PaperError(ValueError):
    """Base of every error about a paper PDF or its rubric."""


class CorruptPdfError(PaperError):
    """The file is not a readable PDF (bad header, broken structure, no pages)."""


class EncryptedPdfError(PaperError):
    """The PDF needs a password that was not given (or the password is wrong)."""


class ScannedPdfError(PaperError):
    """The PDF has no text layer (a scan) and no OCR engine is installed."""


class EmptyPdfError(PaperError):
    """The PDF is empty: zero bytes, or pages with neither text nor images."""


class PaperTooLongError(PaperError):
    """The PDF has more pages than the configured limit (budget guard)."""


class RubricError(PaperError):
    """A rubric.json is malformed; the message lists every problem found."""
