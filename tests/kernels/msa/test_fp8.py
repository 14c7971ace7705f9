"""FP8 (e4m3, per-tensor scale) KV cache in the decode and prefill kernels: exact against the fp32 reference on the
dequantized cache (what the kernels compute with), and close to the reference on the original bf16/fp32 cache (the
quantisation error). CPU under TRITON_INTERPRET=1 (small shapes, fp32 queries); bf16 on a GPU when one is present."""
from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():  # must be set before the kernels' @triton.jit run
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

from kernels.msa import sparse_attention, sparse_decode  # noqa: E402
from kernels.msa.decode import sparse_decode_triton  # noqa: E402
from kernels.msa.inputs import dequantize_kv_fp8, local_selection, make_case, quantize_kv_fp8  # noqa: E402
from kernels.msa.prefill import sparse_attention_triton  # noqa: E402
from tests.kernels.msa.checks import DEVICE, DTYPE, GPU, HEAD_DIM, TOL, rel_err  # noqa: E402

FP8_TOL = 0.1
"""Bound on the output's relative error from e4m3 quantisation of K and V (3 mantissa bits; measured ~3e-2)."""


def test_quantize_round_trip():
    """Scales are amax / 448 per half; dequantised values stay within e4m3's relative step of the originals."""
    case = make_case([300], [1], num_heads=4, num_kv_heads=2, head_dim=HEAD_DIM, dtype=DTYPE, device=DEVICE, seed=31)
    kv8, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
    assert kv8.dtype == torch.float8_e4m3fn and kv8.shape == case.kv_cache.shape
    back = dequantize_kv_fp8(kv8, k_scale, v_scale)
    d = HEAD_DIM
    assert abs(float(back[..., :d].abs().max()) - float(case.kv_cache[..., :d].float().abs().max())) < 1e-3 * 448
    assert rel_err(back, case.kv_cache.float()) < 0.05


def test_fp8_decode():
    case = make_case([2000, 900], [1, 1], num_heads=16, num_kv_heads=2, head_dim=HEAD_DIM, dtype=DTYPE, device=DEVICE,
                     seed=32)
    sel = local_selection(case.query_start_loc.cpu(), case.seq_lens.cpu(), 2, 0.5, seed=3).to(DEVICE)
    kv8, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
    out = sparse_decode_triton(case.q, kv8, sel, case.block_table, case.seq_lens, k_scale=k_scale, v_scale=v_scale)
    args = (sel.cpu(), case.block_table.cpu(), case.seq_lens.cpu(), 1)
    exact = sparse_decode(case.q.cpu(), dequantize_kv_fp8(kv8, k_scale, v_scale).cpu(), *args)
    assert rel_err(out, exact) < TOL
    assert rel_err(out, sparse_decode(case.q.cpu(), case.kv_cache.cpu(), *args)) < FP8_TOL


@pytest.mark.parametrize("max_union,fuse", [(0, False), (63, False), (63, True)])  # KV-outer; adaptive; fused merge
def test_fp8_prefill(max_union, fuse):
    case = make_case([2400, 300], [41, 300], num_heads=16, num_kv_heads=2, head_dim=HEAD_DIM, dtype=DTYPE,
                     device=DEVICE, seed=33)
    sel = local_selection(case.query_start_loc.cpu(), case.seq_lens.cpu(), 2, 0.8, window=8, seed=4)
    kv8, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
    out = sparse_attention_triton(case.q, kv8, sel.to(DEVICE), case.block_table, case.query_start_loc, case.seq_lens,
                                  max_union=max_union, union_tile=8 if GPU else 2, min_share=2, min_shared_pct=0,
                                  k_scale=k_scale, v_scale=v_scale, fuse_merge=fuse)
    args = (sel, case.block_table.cpu(), case.query_start_loc.cpu(), case.seq_lens.cpu())
    exact = sparse_attention(case.q.cpu(), dequantize_kv_fp8(kv8, k_scale, v_scale).cpu(), *args)
    assert rel_err(out, exact) < TOL
    assert rel_err(out, sparse_attention(case.q.cpu(), case.kv_cache.cpu(), *args)) < FP8_TOL
