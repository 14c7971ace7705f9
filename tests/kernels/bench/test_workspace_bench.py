"""The workspace bench's table, without a GPU: every JSON-lines row printed with its allocator counters."""
from __future__ import annotations

import json

from kernels.bench.workspace_bench import STAT_KEYS, print_table


def test_table_prints_every_row_with_its_counters(tmp_path, capsys):
    rows = [{"where": "fresh process", "row": "default, no workspace", "ms": 29.44, "single_ms": 30.12,
             "stats": {**{k: 0 for k in STAT_KEYS}, "allocation.all.allocated": 43, "num_device_alloc": 1},
             "sm_mhz": 1710, "temp_c": 51},
            {"where": "msa_bench process", "row": "default, workspace", "ms": 29.21, "single_ms": 31.31,
             "stats": {**{k: 0 for k in STAT_KEYS}, "allocation.all.allocated": 22}}]  # no NVML: no clock
    path = tmp_path / "ws.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print_table(path)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| fresh process | default, no workspace | 29.44 | 30.12 | 43 | 1 / 0 |")
    assert lines[3].endswith("| 22 | 0 / 0 | 0 / 0 | 0 | - | - |")
