"""The prefill profile's kernel names and table, without a GPU (the profiling itself needs one)."""
from __future__ import annotations

import pytest

from kernels.bench.prefill_profile import print_table, short_name, timeline


def test_short_name_drops_templates_and_parameters():
    assert short_name("void msa_sm90::tile_outer_kernel<3, true, true, false, true>(TmaK, TmaVt, Params)") \
        == "msa_sm90::tile_outer_kernel"
    assert short_name("_merge_kernel") == "_merge_kernel"
    assert len(short_name("x" * 200)) == 60


def test_table_lists_each_kernel_and_what_the_kernels_leave_unexplained(capsys):
    rows = [{"n": 131072, "kind": "f=0.9", "wall_ms": 22.0,
             "kernels_ms": {"msa_sm90::tile_outer_kernel": 19.0, "_merge_kernel": 0.06}}]
    print_table(rows)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "N=128K f=0.9: wall 22.00 ms, kernels 19.06 ms, outside kernels 2.94 ms"
    assert lines[4] == "| msa_sm90::tile_outer_kernel | 19.000 | 86.4% |"
    assert lines[5] == "| _merge_kernel | 0.060 | 0.3% |"


def test_timeline_counts_overlaps_once_and_names_the_kernels_around_each_idle_stretch():
    # two calls of: split 0-10 us, kv 12-50 (a 2 us gap), merge 45-60 overlapping kv, then the next call at 100
    launches = [(0.0, 10.0, "split"), (12.0, 50.0, "kv"), (45.0, 60.0, "merge"),
                (100.0, 110.0, "split"), (112.0, 150.0, "kv"), (145.0, 160.0, "merge")]
    line = timeline(launches, calls=2)
    assert line["span_ms"] == pytest.approx(0.080)
    assert line["busy_ms"] == pytest.approx(0.058)  # (10 + 38 + 10) us a call: the overlap counted once
    assert line["idle_ms"] == pytest.approx(0.022)
    assert line["gaps"][0] == {"after": "merge", "before": "split", "ms": pytest.approx(0.020)}
    assert line["gaps"][1] == {"after": "split", "before": "kv", "ms": pytest.approx(0.002)}


def test_timeline_of_a_kernel_inside_another_keeps_the_outer_one_as_the_last_to_end():
    line = timeline([(0.0, 100.0, "long"), (10.0, 20.0, "short"), (130.0, 140.0, "next")], calls=1)
    assert line["busy_ms"] == pytest.approx(0.110)
    assert line["gaps"] == [{"after": "long", "before": "next", "ms": pytest.approx(0.030)}]
    assert timeline([], calls=3) == {"span_ms": 0.0, "busy_ms": 0.0, "idle_ms": 0.0, "gaps": []}
