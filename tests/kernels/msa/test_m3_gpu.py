"""The prefill paths at M3 shapes (64 query heads, 4 KV heads, d = 128, bf16) on a GPU, against the fp32 reference:
the default (v8's separate merge, v10t's split-counted CSR), the fused merge, int8 partials and an fp8 e4m3 KV cache,
on the indexer's selections (random inputs: little sharing) and on synthetic selections with locality (f = 0.9, 1.0).
Needs a CUDA GPU (run through the device tool; skipped elsewhere)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from kernels.msa.inputs import local_selection, make_case, quantize_kv_fp8
from tests.kernels.msa.checks import GPU, TOL, rel_err, tail_reference

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not GPU, reason="needs a CUDA GPU")]

N, TAIL = 8192, 64
FP8_KV_TOL = 0.1


@pytest.fixture(scope="module")
def case():
    return make_case([N], [N], 64, 4, 128, torch.bfloat16, "cuda", seed=41)


def _selection(case, kind: str) -> torch.Tensor:
    if kind == "indexer":
        from kernels.msa.indexer import msa_index_topk_triton

        return msa_index_topk_triton(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc,
                                     case.seq_lens, max_query_len=N)
    return local_selection(case.query_start_loc, case.seq_lens, 4, float(kind), seed=42)


@pytest.mark.parametrize("kind", ["indexer", "0.9", "1.0"])
def test_m3_prefill_variants(case, kind):
    from kernels.msa.prefill import sparse_attention_triton

    sel = _selection(case, kind)
    args = (case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens)
    ref = tail_reference(case, sel, TAIL)
    kv_outer = sparse_attention_triton(*args, max_union=0)
    for knobs, tol in (({}, TOL), ({"fuse_merge": True}, TOL), ({"fuse_merge": True, "min_shared_pct": 0}, TOL),
                       ({"partial_dtype": torch.int8}, TOL), ({"partial_dtype": torch.int8, "max_union": 0}, TOL),
                       ({"partial_dtype": torch.int8, "fuse_merge": False}, TOL),  # v12m: bf16 carrier side buffer
                       ({"partial_dtype": torch.int8, "tile_impl": "triton"}, TOL)):
        out = torch.full_like(case.q, float("nan"))
        sparse_attention_triton(*args, out=out, **knobs)
        err, diff = rel_err(out[-TAIL:], ref), rel_err(out, kv_outer.float())
        print(f"M3 {kind} {knobs}: ref err {err:.2e}, vs KV-outer (every token) {diff:.2e}")
        assert err < tol and diff < tol, knobs


@pytest.mark.parametrize("widen_fp8", [None, False])  # v17 default (widened pages, CUDA steps); Triton in-kernel
def test_m3_prefill_fp8_kv_cache(case, widen_fp8):
    from kernels.msa.prefill import sparse_attention_triton

    sel = _selection(case, "0.9")
    kv8, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
    case8 = dataclasses.replace(case, kv_cache=kv8)
    out = sparse_attention_triton(case8.q, kv8, sel, case8.block_table, case8.query_start_loc, case8.seq_lens,
                                  k_scale=k_scale, v_scale=v_scale, widen_fp8=widen_fp8)
    err = rel_err(out[-TAIL:], tail_reference(case, sel, TAIL))
    print(f"M3 fp8 KV cache, widen_fp8={widen_fp8}: ref err (unquantised cache) {err:.2e}")
    assert err < FP8_KV_TOL
