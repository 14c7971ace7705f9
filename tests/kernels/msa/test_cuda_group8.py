"""M3 at tensor parallel 8 (v18r): 8 query heads per KV head on a rank. The tile of the adaptive prefill is then 16
tokens (128 rows) with a block shared by >= 6 of them (CPU, under the interpreter: the whole Triton path at that
group against the fp32 reference), and on an sm_90 GPU the CUDA tile-outer step (bf16 variant 26, FP8 variant 24)
takes it: the step alone writes what the Triton step writes, and the whole prefill (unfused, fused, int8 partials,
the FP8 step, a CUDA-graph replay) matches the Triton path and the fp32 reference."""
from __future__ import annotations

import dataclasses
import os

import torch

if not torch.cuda.is_available():  # must be set before the kernels' @triton.jit run
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

from kernels.msa import cuda, sparse_attention  # noqa: E402
from kernels.msa.inputs import local_selection, make_case, quantize_kv_fp8  # noqa: E402
from kernels.msa.tile_outer import min_share_for, tile_tokens  # noqa: E402
from tests.kernels.msa.checks import (  # noqa: E402
    DEVICE,
    DTYPE,
    GPU,
    HEAD_DIM,
    TOL,
    assert_step_writes_like,
    dequantised_tail_reference,
    kind_selection,
    rel_err,
)

SM90 = GPU and torch.cuda.get_device_capability() == (9, 0)
needs_sm90 = pytest.mark.skipif(not SM90, reason="needs an sm_90 GPU (the CUDA library: built here, or prebuilt and "
                                                 "found through M3LAB_MSA_CUDA_CACHE)")
FP8_TOL = 6e-2
"""The FP8 step's bound (test_fp8_step.STEP_TOL: e4m3 Q per row and P, ~3.5e-2 at 16 heads)."""


def test_tile_shape_follows_the_group():
    assert (tile_tokens(16), min_share_for(tile_tokens(16))) == (8, 3)  # M3 at TP <= 4: NOTES v7's defaults
    assert (tile_tokens(8), min_share_for(tile_tokens(8))) == (16, 6)  # TP 8: 128 rows, KV-outer half as dear
    assert tile_tokens(64) == 8 and tile_tokens(2) == 16  # kept within [8, 16] tokens
    assert {5, 16, 26} <= set(cuda.group_variants(8)) and 16 not in cuda.group_variants(16)
    assert cuda.default_variant(8, fp8=False) == 26 and cuda.default_variant(8, fp8=True) == 24


def _case(seq_lens, q_lens, seed):
    return make_case(seq_lens, q_lens, 32, 4, HEAD_DIM, DTYPE, DEVICE, seed=seed)


@pytest.mark.parametrize("shared", [1.0, 0.5])
def test_group8_default_prefill_matches_the_reference(shared):
    """The whole default prefill at 8 query heads per KV head (16-token tiles) on Triton: a chunked request and a
    whole one, slots in any order; the first request's last tile is short (tiles are cut per request)."""
    from kernels.msa.prefill import sparse_attention_triton

    seq_lens, q_lens = ([700, 1500], [700, 1100]) if GPU else ([40, 2600], [40, 70])
    case = _case(seq_lens, q_lens, seed=int(shared * 10) + 3)
    sel = local_selection(case.query_start_loc, case.seq_lens, 4, shared, seed=5).to(DEVICE)
    sel = sel[:, :, torch.randperm(sel.shape[2], device=DEVICE)].contiguous()
    args = (case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens)
    ref = sparse_attention(*(a.cpu() for a in args))
    got = sparse_attention_triton(*args, tile_impl="triton")
    assert rel_err(got, ref) < TOL


@pytest.mark.gpu
@needs_sm90
@pytest.mark.parametrize("shared", [1.0, 0.3])
def test_group8_cuda_step_matches_triton(shared):
    """The bf16 step alone on the 16-token split: direct rows and carrier parts (+ LSE) as the Triton step writes
    them, nothing else; then the whole prefill (CUDA unfused / fused / auto) against Triton and the fp32 reference."""
    from kernels.bench.tile_outer_cuda_bench import tile_outer_runner
    from kernels.msa.prefill import sparse_attention_triton

    case = _case([700, 1500], [700, 1100], seed=int(shared * 10) + 21)
    sel = local_selection(case.query_start_loc, case.seq_lens, 4, shared, seed=22)
    sel = sel[:, :, torch.randperm(sel.shape[2], device="cuda")].contiguous()
    fn_t, (out_t, po_t, lse_t), split, _ = tile_outer_runner(case, sel, "triton")
    fn_c, (out_c, po_c, lse_c), _, _ = tile_outer_runner(case, sel, "cuda", per_sm=1)
    assert split.tokmask.shape[1] == split.union_size.shape[1] * 16
    fn_t()
    fn_c()
    assert_step_writes_like(split, 8, (out_t, po_t, lse_t), (out_c, po_c, lse_c))
    args = (case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens)
    ref = sparse_attention(*(a.cpu() for a in args))
    assert cuda.choose(case.q, case.kv_cache, po_c, 16) is None  # auto takes the CUDA step at TP 8
    want = sparse_attention_triton(*args, tile_impl="triton").float()
    for impl, fuse, partials in (("cuda", False, None), ("cuda", True, None), ("auto", None, None),
                                 ("auto", None, torch.int8), ("cuda", False, torch.int8)):
        got = torch.full_like(case.q, float("nan"))
        sparse_attention_triton(*args, out=got, tile_impl=impl, fuse_merge=fuse, partial_dtype=partials)
        assert rel_err(got, want) < TOL and rel_err(got, ref) < TOL, (impl, fuse, partials)


@pytest.mark.gpu
@needs_sm90
@pytest.mark.parametrize("kind", ["indexer", "0.9"])
@pytest.mark.parametrize("q_terms", [1, 2])
def test_group8_fp8_step(kind, q_terms):
    """The FP8 step (the default, variant 24; v18z, ``fp8_q_terms=2``: variant 30) at TP 8's group: a chunked request
    and a whole one, against the widened bf16 path on the same fp8 cache and the fp32 reference on the dequantised
    cache."""
    from kernels.msa.prefill import sparse_attention_triton

    case = _case([8192 + 4096, 5000], [8192, 5000], seed=61)
    sel = kind_selection(case, kind, 62, 8192)
    kv8, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
    case8 = dataclasses.replace(case, kv_cache=kv8)
    args = (case8.q, kv8, sel, case8.block_table, case8.query_start_loc, case8.seq_lens)
    knobs = {"k_scale": k_scale, "v_scale": v_scale, "tile_impl": "cuda"}
    widened = sparse_attention_triton(*args, **knobs)
    out = sparse_attention_triton(*args, fp8_step=True, fp8_q_terms=q_terms, **knobs)
    tail = 32
    ref = dequantised_tail_reference(case, kv8, k_scale, v_scale, sel, tail)
    err, diff = rel_err(out[-tail:], ref), rel_err(out, widened.float())
    print(f"TP-8 FP8 step {kind}, {q_terms} Q term(s): err vs dequantised ref {err:.2e}, vs widened {diff:.2e}")
    assert err < FP8_TOL and diff < FP8_TOL, (err, diff)


@pytest.mark.gpu
@needs_sm90
def test_group8_prefill_replays_from_a_cuda_graph():
    from kernels.msa.prefill import sparse_attention_triton

    case = _case([1500], [1500], seed=71)
    sel = local_selection(case.query_start_loc, case.seq_lens, 4, 0.9, seed=72)
    args = (case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens)
    out = torch.empty_like(case.q)
    sparse_attention_triton(*args, out=out)  # warm-up: compiles, loads the library
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        sparse_attention_triton(*args, out=out)
    case.q.copy_(torch.randn_like(case.q))
    sel.copy_(local_selection(case.query_start_loc, case.seq_lens, 4, 1.0, seed=73))
    graph.replay()
    torch.cuda.synchronize()
    want = sparse_attention_triton(*args, tile_impl="triton")
    assert rel_err(out, want.float()) < TOL
