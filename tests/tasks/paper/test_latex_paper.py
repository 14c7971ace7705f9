"""A real TeX-typeset two-column paper (pdflatex: Computer Modern fonts, a display fraction, a booktabs table
with only horizontal rules and TeX minus signs, a TikZ figure with text labels, an included image, a
bibliography, page numbers). Ingestion must read it as exactly as the synthetic one."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pymupdf
import pytest

from tasks.paper.bundle import Bundle
from tasks.paper.ingest import ingest_pdf

DATA = Path(__file__).parent / "data"
FILLER_WORDS = "attention sparse model key query token cost layer head training data scale quality speed memory".split()


def _compile(name: str, work: Path) -> Path:
    """pdflatex DATA/<name> in `work` (with the image and filler text it inputs); the PDF's path."""
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex missing (apt-get install texlive-latex-base texlive-latex-recommended texlive-pictures)")
    shutil.copy(DATA / name, work / "paper.tex")
    pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 64, 48), False)
    for y in range(48):
        for x in range(64):
            pix.set_pixel(x, y, (4 * x, 5 * y, 100))
    pix.save(work / "heat.png")
    words = [FILLER_WORDS[(i * 7) % len(FILLER_WORDS)] for i in range(180)]
    (work / "filler.tex").write_text(" ".join(words).capitalize() + ".\n")
    for _ in range(2):  # the second pass resolves references ("Table 1")
        subprocess.run(["pdflatex", "-interaction=nonstopmode", "paper.tex"], cwd=work, check=True,
                       capture_output=True, timeout=120)
    return work / "paper.pdf"


@pytest.fixture(scope="module")
def latex_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    work = tmp_path_factory.mktemp("latex")
    return ingest_pdf(_compile("two_column.tex", work), work / "bundle")


@pytest.fixture(scope="module")
def longer_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    work = tmp_path_factory.mktemp("latex_longer")
    return ingest_pdf(_compile("longer.tex", work), work / "bundle")


def test_sections_and_reading_order(latex_bundle: Bundle) -> None:
    assert latex_bundle.title == "Sparse Attention at Small Scale"
    assert [s.title for s in latex_bundle.sections] == ["Abstract", "1 Introduction", "2 Method", "3 Experiments",
                                                        "4 Conclusion"]
    text = {s.title: s.text for s in latex_bundle.sections}
    assert text["Abstract"] == ("We study top-k sparse attention on small language models and reach a perplexity "
                                "of 12.4 with 25% of the keys.")
    assert text["1 Introduction"].endswith("which is what makes reading order hard.")
    assert text["3 Experiments"] == (
        "Table 1 reports perplexity and throughput. Sparse attention with k = 256 loses 0.3 perplexity points but "
        "runs 1.8 times faster than dense attention. Figure 1 shows the loss curves and Figure 2 the attention "
        "pattern.")
    assert not any(s.text.rstrip().endswith((" 1", " 2")) for s in latex_bundle.sections), "page numbers leaked"


def test_display_fraction_is_one_equation(latex_bundle: Bundle) -> None:
    (eq,) = latex_bundle.equations
    assert eq.number == "1" and "ai =" in eq.text and "exp(q · ki)" in eq.text and "exp(q · kj)" in eq.text


def test_booktabs_table_with_tex_minus(latex_bundle: Bundle) -> None:
    (table,) = latex_bundle.tables
    assert table.caption == "Table 1: Perplexity and throughput on the validation set."
    assert table.header == ["Model", "PPL", "∆tok/s"]
    assert table.rows == [["Dense", "12.1", "0.0"], ["Top-256", "12.4", "−0.35"], ["Top-64", "13.9", "−1.20"]]
    cells = {(n.ref["row"], n.ref["column"]): n.value for n in latex_bundle.numbers if n.source == "table"}
    assert cells[("Top-256", "∆tok/s")] == -0.35 and cells[("Top-64", "PPL")] == 13.9


def test_figures_references_and_numbers(latex_bundle: Bundle) -> None:
    assert sorted((f.id, f.kind, f.caption) for f in latex_bundle.figures) == [
        ("figure_1", "vector", "Figure 1: Training loss of dense and sparse attention."),
        ("figure_2", "raster", "Figure 2: Attention weights of one head."),
    ]
    assert latex_bundle.references == [
        "[1] A. Vaswani et al. Attention is all you need. NeurIPS, 2017.",
        "[2] R. Child et al. Generating long sequences with sparse transformers. 2019."]
    sentence = {n.value for n in latex_bundle.numbers if n.source == "sentence"}
    assert {12.4, 25.0, 0.0003, 10000.0, 0.3, 1.8, 2.5} <= sentence
    assert not any("loss step" in s.text for s in latex_bundle.sections), "figure labels leaked into the text"


def test_longer_paper_subsections_full_width_and_unruled_tables(longer_bundle: Bundle) -> None:
    assert [s.title for s in longer_bundle.sections] == [
        "Abstract", "1 Introduction", "2 Related Work", "3 Method", "3.1 Indexer", "3.2 Training", "4 Experiments",
        "5 Conclusion"]
    tables = {t.id: t for t in longer_bundle.tables}
    assert tables["table_1"].caption == "Table 1: Results across model sizes. Lower perplexity is better."
    assert tables["table_1"].header == ["Size", "Dense PPL", "Sparse PPL", "Speed-up", "Memory (GB)"]
    assert tables["table_1"].rows[2] == ["1.3B", "10.87", "11.27", "2.1", "19.5"]
    # A tabular without rules: no drawings to find, read from the words under its caption.
    assert tables["table_2"].header == ["k", "PPL"]
    assert tables["table_2"].rows == [["64", "12.90"], ["128", "11.95"], ["256", "11.27"]]
    assert [(e.number, e.text) for e in longer_bundle.equations] == [("1", "si = q⊤ki,"),
                                                                     ("2", "a = softmax(topk(s)).")]
    sentence = [(n.value, n.text) for n in longer_bundle.numbers if n.source == "sentence"]
    assert sentence == [(2.1, "2.1×"), (0.4, "0.4"), (11.27, "11.27"), (10.87, "10.87")]
    assert len(longer_bundle.references) == 2 and longer_bundle.references[0].endswith("Systems, 2017.")
    assert longer_bundle.footnotes == ["*Equal contribution."]
    assert not any("contribution" in s.text for s in longer_bundle.sections)


def test_table_beside_a_plot_and_flush_left_headers(tmp_path: Path) -> None:
    """A plot's tick labels beside a table (its caption beside the table's) are no cells; a short header flush
    left over its column stays there, not spread over the empty label header beside it."""
    bundle = ingest_pdf(_compile("side_by_side.tex", tmp_path), tmp_path / "bundle")
    beside, flush = bundle.tables
    assert beside.header == ["", "accuracy", "time"]
    assert beside.rows == [["Grid baseline, k = 8", "54.2", "104 ms"], ["Graph, k = 20 neighbours", "91.3", "250 ms"],
                           ["Graph, k = 40 neighbours", "92.5", "363 ms"]]
    assert flush.header == ["", "TC", "AR", "mean"]
    assert flush.rows[1] == ["Graph (weighted loss)", "58.88 ± 3.17", "95.41 ± 1.51", "77.15 ± 1.94"]
    assert [f.caption for f in bundle.figures] == ["Figure 1: Cost against accuracy."]
