"""The report is rebuilt from files and survives whatever the re-run wrote (broken CSV, broken PNG)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tasks.paper.artifacts import PaperArtifacts
from tasks.paper.bundle import load_bundle
from tasks.paper.grading import Grading, LeafGrade
from tasks.paper.report import write_report
from tasks.paper.rubric import save_rubric, weighted_scores
from tasks.paper.rubric_gen import fallback_rubric


def _run(tmp_path: Path, bundle_dir: Path, outputs: dict[str, bytes]) -> Path:
    run = tmp_path / "run"
    art = PaperArtifacts(run)
    shutil.copytree(bundle_dir, art.bundle)
    rubric = fallback_rubric(load_bundle(art.bundle))
    save_rubric(rubric, art.source_rubric)
    leaves = [LeafGrade(leaf.id, leaf.task_category or "", 0.0, "numeric", "outside", expected=leaf.extra["expected"],
                        got=leaf.extra["expected"] + 1, tolerance=leaf.extra["tolerance"], abs_deviation=1.0,
                        rel_deviation=None) for leaf in rubric.leaves() if "metric" in leaf.extra]
    scores = weighted_scores(rubric, {})
    grading = Grading(leaves, scores, scores["root"], judge_calls=3)
    it = art.iteration(1)
    it.mkdir(parents=True)
    (it / "grades.json").write_text(json.dumps(grading.to_json()))
    for rel, data in outputs.items():
        (it / "outputs" / rel).parent.mkdir(parents=True, exist_ok=True)
        (it / "outputs" / rel).write_bytes(data)
    (run / "iterations").mkdir()
    (run / "iterations" / "0001.json").write_text(json.dumps(
        {"iteration": 1, "verdict": {"verdict": "fail", "findings": ["table_1/ours/mse off by 1.0"]}}))
    return run


def test_report_lists_deviations_and_verdicts(paper_bundle_dir: Path, tmp_path: Path) -> None:
    run = _run(tmp_path, paper_bundle_dir, {"results/table_1.csv": b"Method,MSE,Delta\nOurs,0.30,-1.50\n"})
    markdown = write_report(run)
    assert "| results/table_1/ours/mse | 0.25 | 1.25 | 1 |" in markdown
    assert "iteration 1: fail" in markdown and "off by 1.0" in markdown
    assert "graded with 3 judge calls" in markdown
    art = run / "artifacts" / "paper"
    deviation = (art / "tables" / "table_1.deviation.csv").read_text().splitlines()
    assert deviation[2] == "Ours,0.05,0.05"
    html = (art / "report.html").read_text()
    assert "Tiny Linear Regression Revisited" in html and "figures/figure_2_compare.png" in html
    assert json.loads((art / "rubric.json").read_text())["score"] == 0.0


def test_broken_outputs_do_not_break_the_report(paper_bundle_dir: Path, tmp_path: Path) -> None:
    run = _run(tmp_path, paper_bundle_dir, {"results/table_1.csv": b"\xff\xfe\x00garbage\n\"unclosed",
                                            "figures/figure_1.png": b"not a png"})
    write_report(run)
    html = (run / "artifacts" / "paper" / "report.html").read_text()
    assert "figure_1_compare.png" in html
    assert (run / "artifacts" / "paper" / "figures" / "figure_1_compare.png").is_file()


def test_no_graded_iteration_yet(tmp_path: Path) -> None:
    assert "No iteration was graded yet" in write_report(tmp_path)


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height RGBA pixels (its pixel data is not needed to decide to decode it)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_a_figure_of_too_many_pixels_is_never_decoded(paper_bundle_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A PNG of a few hundred KB can hold 150 megapixels: matplotlib decoded it to ~5 GB of floats (48 s) at every
    report; the re-run's figures are sandbox-written."""
    import matplotlib.image

    decoded: list[object] = []
    real = matplotlib.image.imread
    monkeypatch.setattr(matplotlib.image, "imread", lambda path, *a, **k: decoded.append(path) or real(path, *a, **k))
    run = _run(tmp_path, paper_bundle_dir, {"figures/figure_1.png": _png_header(12000, 12000)})
    write_report(run)
    assert not [p for p in decoded if "outputs" in str(p)], decoded  # the bundle's own figures are still drawn
    assert (run / "artifacts" / "paper" / "figures" / "figure_1_compare.png").is_file()


def test_an_oversized_figure_is_not_sent_to_the_judge(tmp_path: Path) -> None:
    from tasks.paper.evidence import MAX_IMAGE_BYTES, Evidence, figure_images
    from tasks.paper.reproduce import Reproduction

    repo = tmp_path / "repo"
    (repo / "figures").mkdir(parents=True)
    with open(repo / "figures" / "big.png", "wb") as f:
        f.truncate(MAX_IMAGE_BYTES + 1)  # read whole and base64-encoded for the judge
    (repo / "figures" / "small.png").write_bytes(_png_header(10, 10))
    ev = Evidence(repo, Reproduction(True, 0, "exited", False, 1.0, 0.0, ""), tmp_path / "paper")
    assert figure_images({"figure": "f", "output": "figures/big.png"}, ev) == []
    assert figure_images({"figure": "f", "output": "figures/small.png"}, ev) == [repo / "figures" / "small.png"]


def test_an_image_error_that_reads_as_mathtext_does_not_break_the_report(paper_bundle_dir: Path,
                                                                         tmp_path: Path) -> None:
    """PIL's error quotes the re-run's chunk type (`broken PNG file (chunk b'$\\\\^$')`): drawn as mathtext, the
    message made savefig raise and the report (and with it the iteration's end) fail."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 6, 0, 0, 0)) + chunk(b"$\\^$", b"")
           + chunk(b"IEND", b""))
    run = _run(tmp_path, paper_bundle_dir, {"figures/figure_1.png": png})
    write_report(run)
    assert (run / "artifacts" / "paper" / "figures" / "figure_1_compare.png").is_file()
