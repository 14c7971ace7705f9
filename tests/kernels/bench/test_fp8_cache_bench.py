"""The fp8-cache bench's rows on the CPU (TRITON_INTERPRET=1, a tiny case, the timer replaced by one call): every
row is produced, and the accuracy columns it prints are small for both fp8 paths (the bench itself needs a GPU)."""
from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():  # must be set before the kernels' @triton.jit run
    os.environ["TRITON_INTERPRET"] = "1"

import re  # noqa: E402

from kernels.bench import fp8_cache_bench, msa_bench  # noqa: E402
from kernels.bench.msa_bench import HEAD_DIM, PrintedRows  # noqa: E402


def test_rows_on_a_tiny_case(monkeypatch, tmp_path):
    from kernels.msa.inputs import local_selection, make_case

    def once(fn, rep_ms: float = 0.0) -> float:
        fn()
        return 1.0

    monkeypatch.setattr(fp8_cache_bench, "bench_ms", once)
    monkeypatch.setattr(fp8_cache_bench, "peak_extra_bytes", lambda fn: 0)
    monkeypatch.setattr(msa_bench, "bench_workspace", lambda: None)
    monkeypatch.setattr(fp8_cache_bench, "bench_workspace", lambda: None)
    case = make_case([260], [20], num_heads=16, num_kv_heads=1, head_dim=HEAD_DIM, dtype=torch.float32, seed=3)
    sel = local_selection(case.query_start_loc, case.seq_lens, 1, 0.9, seed=4)
    rows = PrintedRows()
    rows.jsonl = tmp_path / "rows.jsonl"
    fp8_cache_bench.fp8_rows(case, sel, "tiny", rows, False)
    assert [r.impl for r in rows] == ["bf16 cache, default", "fp8 cache, in-kernel widening (Triton, widen_fp8=False)",
                                      "fp8 cache, widened pages (default)", "widening alone"]
    assert len(rows.jsonl.read_text().splitlines()) == 4
    for row in rows[1:3]:
        unquantised, dequantised = (float(x) for x in re.findall(r"ref ([0-9.e+-]+)", row.note))
        assert unquantised < 0.1 and dequantised < 1e-4, row.note
