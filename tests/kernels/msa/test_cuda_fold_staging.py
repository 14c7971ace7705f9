"""Variants of the FP8 tile-outer step that change where data comes from or which code computes it, never the
arithmetic, against the variant each replaced, on selections with few and with many KV-outer parts per token (the
whole prefill, both groups: 16 query heads per KV head, 8):
- v18s: variant 19 stages the fused merge's first two KV-outer parts per row in shared memory at the item's start
  (v18t: four int8 parts); it must equal 12 (16 at 8 heads) bit for bit with bf16 partials, and within a bf16
  rounding with int8 ones (nvcc contracts the int8 decode's subtraction into the fold's FMA differently for the
  shared-memory reads).
- v18u: variant 24 (the default) runs clean and masked blocks through one softmax body (a token's unchosen block by
  its row's max and exponent offset, the per-key causal compare only in a block reaching past a row's position); it
  must equal 19 bit for bit with both partial dtypes; v18v: variant 26 (the bf16 default) does the same for the
  bf16 step's masked blocks (on the bf16 cache) and must equal 5 bit for bit.
GPU (sm_90) only; the CPU side is the variant tables."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from kernels.msa import cuda
from kernels.msa.inputs import make_case, quantize_kv_fp8
from tests.kernels.msa.checks import GPU, kind_selection

SM90 = GPU and torch.cuda.get_device_capability() == (9, 0)
needs_sm90 = pytest.mark.skipif(not SM90, reason="needs an sm_90 GPU (the CUDA library: built here, or prebuilt and "
                                                 "found through M3LAB_MSA_CUDA_CACHE)")
BASES = {16: 12, 8: 16}
"""Per group, the FP8 variant 19 changes only in where the fold's parts come from."""
STAGED = 19
ONE_BODY = 24
BF16_BASE = 5
BF16_ONE_BODY = 26
PAIRS = [(16, BASES[16], STAGED, True), (8, BASES[8], STAGED, True), (16, STAGED, ONE_BODY, True),
         (8, STAGED, ONE_BODY, True), (16, BF16_BASE, BF16_ONE_BODY, False), (8, BF16_BASE, BF16_ONE_BODY, False)]
"""(query heads per KV head, base, variant, FP8 step)"""
EXACT = (ONE_BODY, BF16_ONE_BODY)
"""Variants that must equal their base bit for bit with int8 partials too."""


def test_staged_and_one_body_variants_are_built_for_both_groups_and_are_the_defaults():
    for group, base, variant, fp8 in PAIRS:
        assert {base, variant} <= set(cuda.group_variants(group))
        assert (base in cuda.FP8_VARIANTS, variant in cuda.FP8_VARIANTS) == (fp8, fp8)
        assert cuda.default_variant(group, fp8=True) == ONE_BODY
        assert cuda.default_variant(group, fp8=False) == BF16_ONE_BODY


@pytest.mark.gpu
@needs_sm90
@pytest.mark.parametrize("group,base,variant,fp8", PAIRS)
@pytest.mark.parametrize("kind", ["0.9", "0.5"])
def test_variant_equals_the_one_it_replaced(group, base, variant, fp8, kind):
    from kernels.msa.prefill import sparse_attention_triton

    case = make_case([8192 + 2048, 3000], [8192, 3000], 4 * group, 4, 128, torch.bfloat16, "cuda", seed=81)
    sel = kind_selection(case, kind, 82, 8192)
    sel = sel[:, :, torch.randperm(sel.shape[2], device="cuda")].contiguous()  # slots in any order
    knobs = {"tile_impl": "cuda", "fuse_merge": True}
    if fp8:
        kv, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
        case = dataclasses.replace(case, kv_cache=kv)
        knobs |= {"k_scale": k_scale, "v_scale": v_scale, "fp8_step": True}
    args = (case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens)

    def run(v: int, partials: torch.dtype) -> torch.Tensor:
        with cuda.variant_as_default(group, fp8, v):
            return sparse_attention_triton(*args, partial_dtype=partials, **knobs)

    for partials in (torch.bfloat16, torch.int8):
        want = run(base, partials)
        assert torch.isfinite(want).all()
        assert torch.equal(run(base, partials), want)  # the premise: a run repeats bit for bit
        got = run(variant, partials)
        diff = (got.float() - want.float()).abs().max().item()
        if partials == torch.bfloat16 or variant in EXACT:
            assert torch.equal(got, want), diff
        else:  # a bf16 rounding step of the output's largest values at most
            assert diff <= 2 ** -8 * want.float().abs().max().item(), diff
