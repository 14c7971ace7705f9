"""The fp8-cache bench's rows on a tiny case with the timer replaced by one call (CPU: TRITON_INTERPRET=1, fp32; a GPU:
bf16): every row is produced, and the accuracy columns it prints are small for both fp8 paths."""
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
    gpu = torch.cuda.is_available()
    case = make_case([260], [20], num_heads=16, num_kv_heads=1, head_dim=HEAD_DIM,
                     dtype=torch.bfloat16 if gpu else torch.float32, device="cuda" if gpu else "cpu", seed=3)
    sel = local_selection(case.query_start_loc.cpu(), case.seq_lens.cpu(), 1, 0.9, seed=4).to(case.q.device)
    rows = PrintedRows()
    rows.jsonl = tmp_path / "rows.jsonl"
    fp8_cache_bench.fp8_rows(case, sel, "tiny", rows, False)
    assert [r.impl for r in rows] == ["bf16 cache, default", "fp8 cache, in-kernel widening (Triton, widen_fp8=False)",
                                      "fp8 cache, widened pages (default)", "widening alone"]
    assert len(rows.jsonl.read_text().splitlines()) == 4
    for row in rows[1:3]:
        unquantised, dequantised = (float(x) for x in re.findall(r"ref ([0-9.e+-]+)", row.note))
        assert unquantised < 0.1 and dequantised < (2e-2 if gpu else 1e-4), row.note
