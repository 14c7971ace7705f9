"""Vision transcription of table crops, on real corpus pages. No vision model can be served on this machine (2 CPU
cores, no GPU, no model downloads; the embedded SmolLM2 takes no images), so the model here is a scripted chat
model: it receives the real PNG crop through the same `chat_asker` plumbing a served vision endpoint gets, and
answers with (a) a correct grid, (b) a grid with a number the page does not print, (c) garbage. The served path is
covered by its plumbing: an endpoint without vision is never asked, a dead one leaves one note."""
from __future__ import annotations

import base64
import json
import shutil
import threading
from pathlib import Path

import pymupdf
import pytest

from benchmarks.paper_ingest_bench import CORPUS, corpus_pdf, score_bundle
from serving.client import ModelEndpoint
from tasks.paper.asker import chat_asker
from tasks.paper.bundle import load_bundle
from tasks.paper.ingest import ingest_pdf
from tasks.paper.vision_tables import low_confidence, transcribe_tables, transcribe_with_endpoint

DATA = Path(__file__).parent / "data"
needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tables printed as outlines need Tesseract")

MOBILE_TABLE_2 = {
    "header": ["Config.", "Single Instance?", "Chopping Algo.", "Block Size", "Input Zipped?", "Blocks Zipped?"],
    "rows": [["A1", "no", "—", "—", "yes", "—"], ["A2", "yes", "—", "—", "yes", "—"],
             ["B1", "yes", "Manber’s", "1024 B", "no", "no"], ["B2", "yes", "Manber’s", "1024 B", "no", "yes"],
             ["B3", "yes", "fixed-size", "1024 B", "no", "yes"], ["C", "yes", "fixed-size", "1024 B", "yes", "no"]],
}


class ScriptedVisionChat:
    """A chat model that takes images: it answers by the caption in the prompt and keeps the images it was sent
    (decoded from their data URLs, as a served model would receive them)."""

    def __init__(self, replies: dict[str, str], default: str = "I cannot read this table.") -> None:
        self.replies, self.default = replies, default
        self.images: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def invoke(self, messages):
        from langchain_core.messages import AIMessage

        content = messages[0].content
        prompt = next(part["text"] for part in content if part["type"] == "text")
        urls = [part["image_url"]["url"] for part in content if part["type"] == "image_url"]
        key = next((k for k in self.replies if k in prompt), None)
        with self._lock:
            for url in urls:
                self.images[key or prompt[:60]] = base64.b64decode(url.removeprefix("data:image/png;base64,"))
        return AIMessage(content=self.replies[key] if key else self.default)


def _ingest(name: str, tmp_path: Path):
    out = tmp_path / name
    return ingest_pdf(corpus_pdf(name), out), out


@needs_tesseract
def test_correct_grid_joins_wrapped_cells_of_an_ocr_table(tmp_path: Path) -> None:
    """(a) IEEE Access Table 1 (outlines, read by OCR) cuts its two-line cells into lines; the transcription joins
    them, every word and number of it being among the words OCR read there."""
    bundle, out = _ingest("polyp_segmentation_ieee", tmp_path)
    expect = json.loads((CORPUS / "polyp_segmentation_ieee.expect.json").read_text(encoding="utf-8"))
    before = score_bundle("ieee", bundle, expect).cells
    model = ScriptedVisionChat({"Available endoscopic": (DATA / "ieee_table1_transcription.json").read_text()})
    notes = transcribe_tables(bundle, pymupdf.open(corpus_pdf("polyp_segmentation_ieee")), out,
                              chat_asker(model, vision=True))
    # One call per low-confidence table (all five are OCR'd), each with the table's real crop.
    assert len(notes) == 5 and len(model.images) == 5
    crop = pymupdf.Pixmap(model.images["Available endoscopic"])
    assert crop.width > 900 and 350 < crop.height < 600  # the table's area at 150 dpi, not the page
    table = bundle.tables[0]
    hyper = next(r for r, row in enumerate(table.rows) if row[0] == "HyperKvasir [21]")
    assert table.rows[hyper][4] == "110,079 images & 373 videos" and table.sources[hyper][4] == "vision"
    assert sum(1 for row in table.rows if row[0] == "HyperKvasir [21]") == 1  # its three lines are one row
    assert "wrapped lines joined" in notes[0] and "0 dropped" in notes[0]
    assert all("not a table grid" in note for note in notes[1:])  # the other replies were refusals: tables as read
    after = score_bundle("ieee", bundle, expect).cells
    assert after[0] == before[0] + 1 and after[1] == before[1]
    # The bundle on disk says the same: CSV, bundle.json (with the cells' sources), warnings.
    saved = load_bundle(out)
    assert saved.tables[0].rows == table.rows and saved.tables[0].sources == table.sources
    assert "110,079 images & 373 videos" in (out / table.csv).read_text(encoding="utf-8")
    assert any("vision transcription (read by OCR)" in w for w in saved.warnings)


def test_invented_number_is_dropped(tmp_path: Path) -> None:
    """(b) A text-layer table (few numeric cells): a transcribed cell whose number the page does not print is
    dropped, also where it would fill a dash; the cells the page confirms change nothing (they agree)."""
    bundle, out = _ingest("mobile_backup", tmp_path)
    table = next(t for t in bundle.tables if t.id == "table_2")
    assert low_confidence(table) == "few numeric cells"
    rows_before = [list(r) for r in table.rows]
    invented = json.loads(json.dumps(MOBILE_TABLE_2))
    invented["rows"][4][3] = "2048 B"  # B3's block size: 2048 is printed nowhere on the page
    invented["rows"][0][2] = "4096 B"  # and a number over A1's dash
    model = ScriptedVisionChat({"Storage pipeline configurations": json.dumps(invented)})
    notes = transcribe_tables(bundle, pymupdf.open(corpus_pdf("mobile_backup")), out, chat_asker(model, vision=True))
    note = next(n for n in notes if n.startswith("table_2"))
    assert "2 dropped (not printed on the page)" in note and "0 cells filled" in note
    assert table.rows == rows_before and not any("vision" in s for row in table.sources for s in row)
    assert all(n.value not in (2048, 4096) for n in bundle.numbers)


def test_garbage_reply_leaves_the_table_as_read(tmp_path: Path) -> None:
    """(c) A reply that is no grid (prose, a JSON list, a ragged grid) leaves the table untouched, one note each."""
    bundle, out = _ingest("mobile_backup", tmp_path)
    table = next(t for t in bundle.tables if t.id == "table_2")
    rows_before, csv_before = [list(r) for r in table.rows], (out / table.csv).read_text(encoding="utf-8")
    for reply in ("Here is the table: | Config. | Single |", '["A1", "no"]',
                  json.dumps({"header": ["Config."], "rows": [["A1", "no", "—"]]})):
        model = ScriptedVisionChat({"Storage pipeline configurations": reply})
        notes = transcribe_tables(bundle, pymupdf.open(corpus_pdf("mobile_backup")), out, chat_asker(model, vision=True))
        note = next(n for n in notes if n.startswith("table_2"))
        assert "not a table grid" in note and "\n" not in note
        assert table.rows == rows_before and (out / table.csv).read_text(encoding="utf-8") == csv_before


def test_served_endpoint_plumbing(tmp_path: Path) -> None:
    """An endpoint without vision (the embedded SmolLM2) is never asked; a dead vision endpoint gives one note
    and the tables as read. (Port 9 answers nothing here: a connection refused is what a dead server gives.)"""
    bundle, out = _ingest("mobile_backup", tmp_path)
    rows_before = [list(r) for t in bundle.tables for r in t.rows]
    doc = pymupdf.open(corpus_pdf("mobile_backup"))
    dead = ModelEndpoint(base_url="http://127.0.0.1:9/v1", retry_for_s=0.0)
    assert transcribe_with_endpoint(bundle, doc, out, dead) == []  # vision=False: not even contacted
    notes = transcribe_with_endpoint(bundle, doc, out, ModelEndpoint(base_url=dead.base_url, vision=True,
                                                                     retry_for_s=0.0))
    assert len(notes) == 1 and "skipped" in notes[0] and "\n" not in notes[0]
    assert [list(r) for t in bundle.tables for r in t.rows] == rows_before
    assert notes[0] in load_bundle(out).warnings


def test_images_go_only_to_a_model_that_takes_them(tmp_path: Path) -> None:
    """The same asker without vision sends the prompt alone (a text model is never sent an image)."""
    png = tmp_path / "x.png"
    pymupdf.Pixmap(pymupdf.csGRAY, pymupdf.IRect(0, 0, 4, 4), 0).save(png)
    seen = []

    class TextModel:
        def invoke(self, messages):
            from langchain_core.messages import AIMessage

            seen.append(messages[0].content)
            return AIMessage(content="{}")

    chat_asker(TextModel(), vision=False)("prompt", [png])
    assert seen == ["prompt"]


def test_cli_ingest_asks_only_a_vision_verifier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`m3lab paper ingest`: with the default (text-only) verifier nothing is asked; with a vision verifier that
    is down, the bundle gets one note and the ingest still succeeds; `--no-vision` turns the step off."""
    from typer.testing import CliRunner

    from orchestrator.cli import app

    for name in ("M3LAB_BASE_URL", "M3LAB_MODEL"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "m3lab.toml"
    config.write_text('[verifier]\nbase_url = "http://127.0.0.1:9/v1"\nvision = true\nretry_for_s = 0.0\n')
    pdf = str(corpus_pdf("mobile_backup"))
    runs = {"vision": ["--config", str(config)], "off": ["--config", str(config), "--no-vision"], "default": []}
    warnings = {}
    for key, extra in runs.items():
        result = CliRunner().invoke(app, ["paper", "ingest", pdf, "--out", str(tmp_path / key), "--json", *extra])
        assert result.exit_code == 0, result.output
        warnings[key] = json.loads(result.stdout)["warnings"]
    assert sum("vision transcription of tables skipped" in w for w in warnings["vision"]) == 1
    assert not any("vision" in w for w in warnings["off"] + warnings["default"])


def test_cli_ingest_with_a_broken_default_config_still_ingests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The vision step is optional: a broken ./m3lab.toml skips it with a note, the ingest itself succeeds."""
    from typer.testing import CliRunner

    from orchestrator.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m3lab.toml").write_text("[verifier\nvision = true\n")
    result = CliRunner().invoke(app, ["paper", "ingest", str(corpus_pdf("mobile_backup")), "--out",
                                      str(tmp_path / "b"), "--json"])
    assert result.exit_code == 0, result.output
    warnings = json.loads(result.stdout)["warnings"]
    assert sum("vision transcription of tables skipped" in w for w in warnings) == 1
