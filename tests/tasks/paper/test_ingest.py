"""Exact extraction checks on the synthetic two-column paper (tests/tasks/paper/synthetic_pdfs.py)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pymupdf

from tasks.paper.bundle import load_bundle

from .synthetic_pdfs import CONCLUSION, EXPERIMENTS, PAPER


def test_title_and_sections_in_reading_order(paper_bundle_dir: Path) -> None:
    bundle = load_bundle(paper_bundle_dir)
    assert bundle.title == PAPER.title
    assert [s.title for s in bundle.sections] == list(PAPER.sections)
    # Two columns share rows: reading by y alone would splice the right column into the left one.
    by_title = {s.title: s.text for s in bundle.sections}
    assert by_title["Abstract"] == "We show that least squares fits a noisy line with a test error of 0.25."
    assert by_title["3 Experiments"] == EXPERIMENTS
    assert by_title["4 Conclusion"] == CONCLUSION
    assert by_title["2 Method"].endswith("[Equation 1: y = w x + b]")


def test_equation_crop_and_text(paper_bundle_dir: Path) -> None:
    (eq,) = load_bundle(paper_bundle_dir).equations
    assert (eq.text, eq.number, eq.page) == (PAPER.equation_text, "1", 0)
    pix = pymupdf.Pixmap(str(paper_bundle_dir / eq.image))
    assert pix.width > 100 and pix.height > 20


def test_table_cells_are_validated_and_exact(paper_bundle_dir: Path) -> None:
    (table,) = load_bundle(paper_bundle_dir).tables
    assert table.caption == PAPER.table_caption
    assert table.header == list(PAPER.table_header)
    assert table.rows == [list(r) for r in PAPER.table_rows]
    assert table.numeric_cells == 6
    with open(paper_bundle_dir / table.csv, newline="") as f:
        assert list(csv.reader(f)) == [list(PAPER.table_header)] + [list(r) for r in PAPER.table_rows]
    # Every cell is read from its words (a table finder was seen to scramble "1.50" into "150\n.").
    assert table.warnings == ["rebuilt from word positions under its caption"]
    assert table.styles == [["", "", ""]] * 3


def test_raster_and_vector_figures_with_captions(paper_bundle_dir: Path) -> None:
    figures = load_bundle(paper_bundle_dir).figures
    assert [(f.id, f.kind, f.caption) for f in figures] == [
        ("figure_1", "raster", PAPER.figure_captions[0]),
        ("figure_2", "vector", PAPER.figure_captions[1]),
    ]
    for fig in figures:
        pix = pymupdf.Pixmap(str(paper_bundle_dir / fig.image))
        assert pix.width > 200 and pix.height > 100


def test_every_reported_number_has_context(paper_bundle_dir: Path) -> None:
    numbers = load_bundle(paper_bundle_dir).numbers
    sentence = {n.value for n in numbers if n.source == "sentence"}
    assert sentence == set(PAPER.sentence_numbers)
    cells = [(n.ref["row"], n.ref["column"], n.value) for n in numbers if n.source == "table"]
    assert cells == [("Baseline", "MSE", 1.5), ("Baseline", "Delta", -0.3), ("Ours", "MSE", 0.25),
                     ("Ours", "Delta", -1.55), ("Oracle", "MSE", 0.04), ("Oracle", "Delta", -1.71)]
    assert all(n.context for n in numbers)
    (n83,) = [n for n in numbers if n.value == 83.4]
    assert "83.4 percent of the variance" in n83.context


def test_references_are_separated(paper_bundle_dir: Path) -> None:
    bundle = load_bundle(paper_bundle_dir)
    assert bundle.references == list(PAPER.references)
    assert not any("Gauss" in s.text for s in bundle.sections)
    assert (paper_bundle_dir / "references.txt").read_text().splitlines() == list(PAPER.references)


def test_summary_counts(paper_bundle_dir: Path) -> None:
    summary = json.loads((paper_bundle_dir / "summary.json").read_text())
    assert summary["counts"] | {"text_chars": 0, "approx_tokens": 0} == {
        "pages": 2, "sections": 5, "equations": 1, "tables": 1, "figures": 2, "numbers": 10, "references": 2,
        "footnotes": 0, "text_chars": 0, "approx_tokens": 0}
    assert summary["ocr"] is False
    assert (paper_bundle_dir / "text.md").read_text().startswith(f"# {PAPER.title}")


def test_cli_ingest_json(paper_pdf: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from orchestrator.cli import app

    result = CliRunner().invoke(app, ["paper", "ingest", str(paper_pdf), "--out", str(tmp_path / "b"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["counts"]["tables"] == 1 and data["counts"]["figures"] == 2
    assert (tmp_path / "b" / "tables" / "table_1.csv").is_file()
