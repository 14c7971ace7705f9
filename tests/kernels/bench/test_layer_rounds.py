"""layer_rounds' bookkeeping without a GPU: the nvidia-smi lines, which samples belong to a part, the rounds'
summary and order (the timing itself needs one)."""
from __future__ import annotations

import pytest

from kernels.bench.layer_rounds import (
    PARTS,
    card_during,
    layer_excess,
    parse_smi_line,
    rotated,
    summarise,
    vllm_ratios,
)


def test_smi_lines_parse_or_are_dropped():
    assert parse_smi_line("1980, 512.34") == (1980.0, 512.34)
    assert parse_smi_line(" 1755 , 699.9 \n") == (1755.0, 699.9)
    assert parse_smi_line("[N/A], 300") is None
    assert parse_smi_line("No devices were found") is None


def test_card_keeps_only_the_samples_inside_the_window():
    samples = [(0.5, 1000.0, 100.0), (1.0, 1980.0, 600.0), (1.5, 1800.0, 700.0), (2.5, 1000.0, 100.0)]
    got = card_during(samples, 1.0, 2.0)
    assert got["samples"] == 2
    assert got["sm_mhz"] == pytest.approx(1890.0)
    assert got["watts"] == pytest.approx(650.0)
    assert card_during(samples, 3.0, 4.0) == {"samples": 0}


def test_summary_takes_every_call_and_the_spread_of_the_rounds():
    calls = {"indexer": [[14.0, 14.2, 14.4], [14.6, 14.8]],
             "attention": [[29.0, 30.0, 31.0], [30.5]],
             "layer": [[45.0, 46.0], [44.0, 44.5, 48.0]]}
    s = summarise(calls)
    assert s["indexer"] == {"median_ms": 14.4, "round_min_ms": 14.2, "round_max_ms": 14.7, "calls": 5}
    assert s["attention"]["median_ms"] == pytest.approx(30.25)
    assert s["layer"]["round_min_ms"] == 44.5 and s["layer"]["round_max_ms"] == 45.5
    assert layer_excess(s) == pytest.approx(45.0 - 14.4 - 30.25)


def test_each_part_takes_each_place_equally_often():
    orders = [rotated(PARTS, r) for r in range(len(PARTS))]
    for place in range(len(PARTS)):
        assert sorted(order[place] for order in orders) == sorted(PARTS)
    assert rotated(PARTS, 3) == rotated(PARTS, 0) == list(PARTS)


def test_vllm_ratios_are_theirs_over_ours_for_the_parts_both_ran():
    summary = {"attention": {"median_ms": 30.0}, "vLLM attention": {"median_ms": 75.0},
               "layer": {"median_ms": 45.0}, "indexer": {"median_ms": 14.5}}
    assert vllm_ratios(summary) == {"attention": pytest.approx(2.5)}  # no vLLM layer timed: no layer ratio
    summary["vLLM layer"] = {"median_ms": 99.0}
    assert vllm_ratios(summary)["layer"] == pytest.approx(2.2)
