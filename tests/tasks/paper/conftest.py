"""Fixtures of the paper tests: the synthetic papers (written once per session) and their ingest bundles."""
from __future__ import annotations

from pathlib import Path

import pytest

from . import tiny_experiment
from .synthetic_pdfs import write_paper, write_tiny_paper


@pytest.fixture(scope="session")
def paper_pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_paper(tmp_path_factory.mktemp("paper") / "synthetic.pdf")


@pytest.fixture(scope="session")
def paper_bundle_dir(paper_pdf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tasks.paper.ingest import ingest_pdf

    out = tmp_path_factory.mktemp("bundle")
    ingest_pdf(paper_pdf, out)
    return out


@pytest.fixture(scope="session")
def tiny_pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    r = tiny_experiment.results()
    return write_tiny_paper(tmp_path_factory.mktemp("tiny") / "tiny.pdf", r["slope"], r["Baseline"], r["Ours"])
