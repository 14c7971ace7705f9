"""Unusable PDFs end with a named error and a clear message, never a crash or an empty bundle."""
from __future__ import annotations

from pathlib import Path

import pytest

from tasks.paper.errors import (
    CorruptPdfError,
    EmptyPdfError,
    EncryptedPdfError,
    PaperTooLongError,
    ScannedPdfError,
)
from tasks.paper.ingest import ingest_pdf
from tasks.paper.pdf import ocr_available

from .synthetic_pdfs import write_corrupt, write_empty, write_encrypted, write_long, write_scanned


def test_encrypted_needs_password(tmp_path: Path) -> None:
    pdf = write_encrypted(tmp_path / "enc.pdf")
    with pytest.raises(EncryptedPdfError, match="encrypted; pass --password"):
        ingest_pdf(pdf, tmp_path / "out")
    with pytest.raises(EncryptedPdfError, match="password given is wrong"):
        ingest_pdf(pdf, tmp_path / "out", password="nope")
    bundle = ingest_pdf(pdf, tmp_path / "out", password="user")
    assert any(n.value == 0.5 for n in bundle.numbers)


def test_scanned_without_ocr_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tasks.paper.pdf.ocr_available", lambda: False)  # as on a machine without Tesseract
    with pytest.raises(ScannedPdfError, match="no text layer.*tesseract-ocr"):
        ingest_pdf(write_scanned(tmp_path / "scan.pdf"), tmp_path / "out")


@pytest.mark.skipif(not ocr_available(), reason="needs Tesseract (apt-get install tesseract-ocr)")
def test_scanned_with_ocr_engine(tmp_path: Path) -> None:
    bundle = ingest_pdf(write_scanned(tmp_path / "scan.pdf"), tmp_path / "out")
    assert bundle.ocr and any(n.value == 91.2 for n in bundle.numbers)


def test_corrupt(tmp_path: Path) -> None:
    with pytest.raises(CorruptPdfError, match="no readable pages"):
        ingest_pdf(write_corrupt(tmp_path / "bad.pdf"), tmp_path / "out")
    text = tmp_path / "notes.pdf"
    text.write_text("just some notes, not a PDF")
    with pytest.raises(CorruptPdfError, match="not a PDF"):
        ingest_pdf(text, tmp_path / "out")
    with pytest.raises(CorruptPdfError, match="no such file"):
        ingest_pdf(tmp_path / "missing.pdf", tmp_path / "out")


def test_empty(tmp_path: Path) -> None:
    with pytest.raises(EmptyPdfError, match="neither text nor images"):
        ingest_pdf(write_empty(tmp_path / "blank.pdf"), tmp_path / "out")
    zero = tmp_path / "zero.pdf"
    zero.write_bytes(b"")
    with pytest.raises(EmptyPdfError, match="0 bytes"):
        ingest_pdf(zero, tmp_path / "out")


def test_very_long(tmp_path: Path) -> None:
    pdf = write_long(tmp_path / "long.pdf", 160)
    with pytest.raises(PaperTooLongError, match="160 pages exceed the limit of 150"):
        ingest_pdf(pdf, tmp_path / "out")
    bundle = ingest_pdf(pdf, tmp_path / "out", max_pages=200)
    assert bundle.page_count == 160 and bundle.sections[0].title == "Body"
    assert "no section headings" in bundle.warnings[0]


def test_cli_reports_the_error(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from orchestrator.cli import app

    pdf = write_encrypted(tmp_path / "enc.pdf")
    result = CliRunner().invoke(app, ["paper", "ingest", str(pdf), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "encrypted" in result.output
