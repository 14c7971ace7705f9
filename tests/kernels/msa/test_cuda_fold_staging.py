"""v18s: the FP8 tile-outer step's fused merge with its first two KV-outer parts per row staged in shared memory at the
item's start (variant 19, the default since v18s); v18t: with int8 partials, their first four parts. The parts are
folded in the same order with the same arithmetic, so the whole prefill must equal the variant it replaced (12 at 16
query heads per KV head, 16 at 8): bit for bit with bf16 partials, within a bf16 rounding with int8 ones (nvcc
contracts the int8 decode's subtraction into the fold's FMA differently for the shared-memory reads), on selections
with few and with many KV-outer parts per token. GPU (sm_90) only; the CPU side is the variant tables."""
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


def test_staged_variant_is_built_for_both_groups_and_is_the_fp8_default():
    for group, base in BASES.items():
        assert {base, STAGED} <= set(cuda.group_variants(group)) and STAGED in cuda.FP8_VARIANTS
        assert cuda.default_variant(group, fp8=True) == STAGED


@pytest.mark.gpu
@needs_sm90
@pytest.mark.parametrize("group", [16, 8])
@pytest.mark.parametrize("kind", ["0.9", "0.5"])
def test_staged_fold_equals_the_register_fold(group, kind):
    from kernels.msa.prefill import sparse_attention_triton

    case = make_case([8192 + 2048, 3000], [8192, 3000], 4 * group, 4, 128, torch.bfloat16, "cuda", seed=81)
    sel = kind_selection(case, kind, 82, 8192)
    sel = sel[:, :, torch.randperm(sel.shape[2], device="cuda")].contiguous()  # slots in any order
    kv, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
    case = dataclasses.replace(case, kv_cache=kv)
    args = (case.q, kv, sel, case.block_table, case.query_start_loc, case.seq_lens)
    knobs = {"tile_impl": "cuda", "fuse_merge": True, "k_scale": k_scale, "v_scale": v_scale, "fp8_step": True}

    def run(variant: int, partials: torch.dtype | None) -> torch.Tensor:
        with cuda.variant_as_default(group, True, variant):
            return sparse_attention_triton(*args, partial_dtype=partials, **knobs)

    for partials in (None, torch.int8):
        base = run(BASES[group], partials)
        assert torch.isfinite(base).all()
        assert torch.equal(run(BASES[group], partials), base)  # the premise: a run repeats bit for bit
        got = run(STAGED, partials)
        diff = (got.float() - base.float()).abs().max().item()
        if partials is None:
            assert torch.equal(got, base), diff
        else:  # a bf16 rounding step of the output's largest values at most
            assert diff <= 2 ** -8 * base.float().abs().max().item(), diff
