"""The MSA benchmark's run plumbing, without a GPU: option labels are checked before any GPU work, a section cap
stops a section with a row that says so, and rows are streamed to JSON lines as they are measured (a run killed
by its time limit keeps them)."""
from __future__ import annotations

import json

import pytest

from kernels.bench.msa_bench import ADAPTIVE_VARIANTS, PrintedRows, Row, SectionClock, chosen_variants


def test_variants_by_label():
    assert chosen_variants("") == []
    assert [name for name, _ in chosen_variants("all")] == [name for name, _ in ADAPTIVE_VARIANTS]
    assert [name for name, _ in chosen_variants("fused merge, int8 partials")] == ["int8 partials", "fused merge"]
    with pytest.raises(SystemExit, match="fp8 partials"):
        chosen_variants("int8 partials,fp8 partials")  # removed in v10t: named in the error, nothing runs


def test_section_cap_and_streamed_rows(tmp_path, monkeypatch):
    rows = PrintedRows()
    rows.jsonl = tmp_path / "run.jsonl"
    monkeypatch.setattr(SectionClock, "cap_s", 0.0)
    SectionClock.begin()
    assert not SectionClock.over(rows, "locality", "N=1K", "x")  # no cap: never over
    rows.append(Row("locality", "N=1K", "ours", 1.5, note="first"))
    monkeypatch.setattr(SectionClock, "cap_s", 1e-9)
    assert SectionClock.over(rows, "locality", "N=1K", "int8 partials")
    lines = [json.loads(line) for line in rows.jsonl.read_text().splitlines()]
    assert [r["impl"] for r in lines] == ["ours", "skipped from here: int8 partials"]
    assert lines[0]["time_ms"] == 1.5 and "section cap" in lines[1]["note"]
