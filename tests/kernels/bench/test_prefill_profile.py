"""The prefill profile's kernel names and table, without a GPU (the profiling itself needs one)."""
from __future__ import annotations

from kernels.bench.prefill_profile import print_table, short_name


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
