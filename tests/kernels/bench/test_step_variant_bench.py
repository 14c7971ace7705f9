"""The step-variant bench's set syntax (its timing needs an sm_90 GPU: the CUDA step)."""
from __future__ import annotations

import pytest

from kernels.bench.step_variant_bench import Candidate, VariantSet


def test_sets_parse_with_the_base_first():
    vs = VariantSet.parse("8:fp8:16,19")
    assert (vs.group, vs.fp8, vs.variants) == (8, True, (Candidate(16), Candidate(19)))
    assert VariantSet.parse("16:bf16:5").variants == (Candidate(5),)
    assert VariantSet.parse("16:fp8:19,20/int8,19/bf16").variants == (Candidate(19), Candidate(20, int8=True),
                                                                       Candidate(19))
    assert str(Candidate(20, int8=True)) == "variant 20, int8 parts"
    with pytest.raises(ValueError, match="V/int8"):
        VariantSet.parse("16:fp8:19,20/fp8")
    with pytest.raises(ValueError, match="bf16 or fp8"):
        VariantSet.parse("16:fp16:5,7")
    with pytest.raises(ValueError, match="GROUP:bf16"):
        VariantSet.parse("16:5,7")


def test_a_variant_is_the_default_only_within_the_block():
    from kernels.msa import cuda

    for group, fp8 in cuda.DEFAULT_NAMES:
        before = cuda.default_variant(group, fp8)
        with cuda.variant_as_default(group, fp8, 99):
            assert cuda.default_variant(group, fp8) == 99
        assert cuda.default_variant(group, fp8) == before
