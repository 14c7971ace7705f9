"""Ingest scored on real published papers (tests/tasks/paper/corpus/, CC BY 4.0, hand-checked expectations).
The full 12-paper table with timings is benchmarks/paper_ingest_bench.py; here four papers of different table
kinds are scored with the same scorer and must keep the levels measured when the corpus was made."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.paper_ingest_bench import CORPUS, score_bundle
from tasks.paper.ingest import ingest_pdf

# (paper, min share of tables found, of checked cells right, of headline numbers, of headings)
LEVELS = [
    ("meta_learning", 1.0, 1.0, 1.0, 0.8),      # ± cells, two-line headers, a table wider than its caption
    ("label_smoothing", 1.0, 0.9, 1.0, 0.75),   # small caps, spanning header, multirow labels, bold, fully ruled
    ("graph_ordering", 1.0, 1.0, 1.0, 1.0),     # captions under the tables, ×10⁶ headers, bold
    ("retinal_mosaics", 1.0, 1.0, 1.0, 0.9),    # ± and subscripted headers
]


def _share(pair: tuple[int, int]) -> float:
    return pair[0] / pair[1] if pair[1] else 1.0


@pytest.mark.parametrize(("name", "tables", "cells", "headline", "headings"), LEVELS)
def test_real_paper_scores(name: str, tables: float, cells: float, headline: float, headings: float,
                           tmp_path: Path) -> None:
    pdf = CORPUS / f"{name}.pdf"
    expect = json.loads(pdf.with_suffix(".expect.json").read_text(encoding="utf-8"))
    bundle = ingest_pdf(pdf, tmp_path / "bundle")
    score = score_bundle(name, bundle, expect)
    assert _share(score.tables) >= tables, score.misses
    assert _share(score.cells) >= cells, score.misses
    assert _share(score.headline) >= headline, score.misses
    assert _share(score.headings) >= headings, score.misses


def test_running_headers_and_licence_block_stay_out_of_the_text(tmp_path: Path) -> None:
    bundle = ingest_pdf(CORPUS / "label_smoothing.pdf", tmp_path / "bundle")
    text = " ".join(s.text for s in bundle.sections)
    assert "ReScience C 10.1" not in text  # the running footer of every page
    assert "Creative Commons" not in text and "Correspondence should be addressed" not in text


def test_bold_and_spread_reach_the_number_list(tmp_path: Path) -> None:
    bundle = ingest_pdf(CORPUS / "meta_learning.pdf", tmp_path / "bundle")
    (cell,) = [n for n in bundle.numbers if n.source == "table" and n.ref["table"] == "table_1"
               and n.ref["row"] == "5-way, 1-shot" and n.ref["column"].startswith("R2D2 ours")]
    assert (cell.value, cell.uncertainty) == (62.7, 1.8)
    table2 = next(t for t in ingest_pdf(CORPUS / "label_smoothing.pdf", tmp_path / "b2").tables if t.id == "table_2")
    best = [row[c] for row, styles in zip(table2.rows, table2.styles, strict=True) for c, s in enumerate(styles) if s == "b"]
    assert "99.33" in best and "93.62" in best and "99.06" not in best


def test_references_split_into_numbered_entries_in_order(tmp_path: Path) -> None:
    """ReScience sets each reference number alone in the margin ("1." then the entry's lines)."""
    refs = ingest_pdf(CORPUS / "meta_learning.pdf", tmp_path / "bundle").references
    assert refs[0].startswith("1. D. Silver, A. Huang")
    assert [r.split(".")[0] for r in refs] == [str(i) for i in range(1, len(refs) + 1)] and len(refs) >= 10
