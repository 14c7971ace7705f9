"""A table printed as glyph outlines (no text layer), built the way IEEE Access's production prints one: one filled
path per word, exponents and subscripts as small paths of their own, a raised minus as a flat bar, a bold row
drawn glyph by glyph over grey shading, booktabs rules as filled bars (tests/tasks/paper/outlined_pdf.py). The
real case, the IEEE Access article of the corpus, is scored in test_corpus.py."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tasks.paper.ingest import ingest_pdf
from tasks.paper.numbers import parse_value
from tasks.paper.outlined import OCR_WARNING

from .outlined_pdf import write_outlined_table

pytestmark = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tables printed as outlines need Tesseract")


def test_outlined_table_reads_scripts_signs_and_bold(tmp_path: Path) -> None:
    bundle = ingest_pdf(write_outlined_table(tmp_path / "outlined.pdf"), tmp_path / "bundle")
    (table,) = bundle.tables
    assert table.warnings == [OCR_WARNING]
    assert table.header == ["Method", "AP₅₀", "Rate"]  # the subscript is a path of its own, set lower
    # The shading behind "Ours" and the rules drawn as filled bars are no glyphs (no "-" cells, no black box).
    assert table.rows == [["Baseline", "0.8123", "1e⁻⁴"], ["Ours", "0.9011", "2.5e⁻³"], ["Other", "0.7544", "3e⁻⁵"]]
    # Bold from the strokes: the row drawn in bold (glyph by glyph) and nothing else.
    assert table.styles == [["", "", ""], ["b", "b", ""], ["", "", ""]]
    assert parse_value("2.5e⁻³") == (0.0025, None)
    rates = {n.ref["row"]: n.value for n in bundle.numbers if n.ref.get("column") == "Rate"}
    assert rates == pytest.approx({"Baseline": 1e-4, "Ours": 0.0025, "Other": 3e-5})
