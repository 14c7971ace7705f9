"""The sm_90a CUDA KV-outer kernel (kernels/msa/cuda/kv_outer_sm90.cu, v12k): it compiles for sm_90a in the shared
library with wgmma, TMA loads and TMA stores and no spills (CPU, skipped without nvcc or the CUTLASS headers); the
``kv_impl`` policy names every input it cannot take, logs once and never builds in a call (CPU); on a GPU (marked
`gpu`) its partials match the Triton kernel's entry by entry into poisoned buffers, and the whole prefill with it
matches Triton and the fp32 reference, also replayed from a CUDA graph. v12n: the metadata-warp variants and int8
parts in ``merge.store_part``'s format (each int8 value within one quantum of the Triton int8 kernel's, unlisted
entries untouched), the whole prefill with int8 parts on CUDA vs Triton and the reference. v13q: the fast-softmax
variants (approximate log2 / reciprocal, no division slow path in the bf16 ones) and the timing diagnostics compile
without spills; the diagnostics refuse int8 parts. v13t: variant 8's software 2^x (kernels/msa/cuda/exp2_poly.py)
emulated in fp32 on the CPU against the exact 2^x, its coefficients the kernel's; its SASS has a quarter of variant
7's MUFU.EX2 on FFMA instead; the prefill and graph GPU tests run the default and the new variants."""
from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported: the prefill test runs the kernels on the CPU

from kernels.msa import cuda
from kernels.msa.cuda import exp2_poly
from tests.kernels.msa.checks import GPU, TOL, cuda_toolchain_missing, rel_err

NEW_VARIANTS = (8, 9)
"""v13t's variants: the GPU prefill and graph tests run them beside the default."""
PREFILL_VARIANTS = sorted({cuda.KV_DEFAULT_VARIANT, *NEW_VARIANTS})


def _variant_id(variant: int) -> str:
    """Test ids ``v9`` etc., so that one variant can be selected or left out (``-k "not v9"``)."""
    return f"v{variant}"
KERNEL_ARGS = re.compile(r"kv_outer_kernelILi(\d+)ELi(\d+)ELb([01])ELi(\d+)ELb([01])ELi(\d+)ELi(\d+)EE")
"""kv_outer_kernel<kv stages, q stages, int8, diag, fast, poly, consumers> in a mangled name."""


def _kernel_sass(sass: str, name: str) -> list[str]:
    """The SASS of each function whose mangled name contains ``name`` (cuobjdump prints one section each)."""
    sections = sass.split("Function : ")
    return [s for s in sections[1:] if name in s.splitlines()[0]]


def _kernel_args(sass: str) -> tuple[int, ...]:
    """The template arguments of the kv_outer_kernel whose SASS this is."""
    found = KERNEL_ARGS.search(sass.splitlines()[0])
    assert found, sass.splitlines()[0]
    return tuple(int(v) for v in found.groups())


@pytest.mark.skipif(bool(cuda_toolchain_missing()), reason=f"cannot build: {cuda_toolchain_missing()}")
def test_kv_outer_kernel_compiles_into_the_shared_library(tmp_path):
    lib = cuda.build(cache_dir=tmp_path)
    assert {p.name for p in cuda.SOURCES} == {"tile_outer_sm90.cu", "kv_outer_sm90.cu"}  # one library, one hash
    import triton

    cuobjdump = shutil.which("cuobjdump") or Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    if not Path(cuobjdump).is_file():
        pytest.skip("no cuobjdump to read the SASS")
    every = _kernel_sass(subprocess.run([str(cuobjdump), "-sass", str(lib)], capture_output=True, text=True,
                                         check=True).stdout, "kv_outer_kernel")
    # kv_outer_kernel<kv stages, q stages, int8, diag, fast, poly, consumers>; diag != 0: timing diagnostics (v13q)
    by_args = {_kernel_args(sass): sass for sass in every}
    diag = [sass for args, sass in by_args.items() if args[3] != 0]
    kernels = [sass for args, sass in by_args.items() if args[3] == 0]
    assert len(diag) == len(cuda.KV_DIAG_VARIANTS)
    assert len(kernels) == len(cuda.KV_VARIANTS) + len(cuda.KV_INT8_VARIANTS)  # bf16 and int8 parts
    fast = [sass for args, sass in by_args.items() if args[3] == 0 and args[4] == 1]
    assert len(fast) == 8  # variants 6 to 9, bf16 and int8: the softmax with lg2 / rcp approximations
    poly = {args: sass for args, sass in by_args.items() if args[5] != 0}
    assert len(poly) == 2  # v13t: variant 8, bf16 and int8
    for args, sass in poly.items():
        # every 4th column pair's 2^x on the FMA pipe: a quarter of variant 7's MUFU.EX2 (16 of 64 per thread, in
        # the masked and the unmasked softmax each), 5 FFMA of the polynomial for each
        base = by_args[(*args[:5], 0, 2)]
        moved = base.count("MUFU.EX2") // 4
        assert moved >= 32 and sass.count("MUFU.EX2") == base.count("MUFU.EX2") - moved
        assert sass.count("FFMA") >= base.count("FFMA") + 5 * moved
    three = {args: sass for args, sass in by_args.items() if args[6] == 3}
    assert len(three) == 2  # v13t: variant 9 (3 consumer warpgroups), bf16 and int8
    for sass in three.values():
        # S of a 64-key half (64 x 64 wgmma), the same 64-row P V; per half and softmax path 32 MUFU.EX2, + 2 corr
        assert "HGMMA.64x64x16.F32.BF16" in sass and "HGMMA.64x128x16.F32.BF16" in sass
        assert sass.count("MUFU.EX2") == 2 * 2 * (32 + 2)
        # 160 registers per consumer thread: one loop counter lives in local memory (a load and a store per work
        # item, none in the tile loop: NOTES v13t); anything more is a spill in the math
        assert sass.count("LDL") <= 1 and sass.count("STL") <= 2
    for sass in fast:
        assert "MUFU.LG2" in sass and "MUFU.RCP" in sass
        if "UTMASTG" in sass:  # bf16 parts: no IEEE division slow path left (int8 keeps 127 / max|o| exact)
            assert "CALL.REL" not in sass
    for sass in diag:
        assert "LDL" not in sass and "STL" not in sass
    int8 = [sass for sass in kernels if "UTMASTG" not in sass]
    assert len(int8) == len(cuda.KV_INT8_VARIANTS)  # bf16 parts leave by TMA store, int8 parts by 16-byte stores
    for args, sass in by_args.items():
        if args[3] != 0:
            continue
        assert "HGMMA.64x128x16.F32.BF16" in sass  # S = Q K^T and O = P V on wgmma
        assert "UTMALDG.4D" in sass and "UTMALDG.5D" in sass  # K/V pages and the gathered Q boxes by TMA
        assert "USETMAXREG" in sass  # producer / consumer register reallocation
        if args[6] == 2:
            assert "LDL" not in sass and "STL" not in sass  # no spills to local memory
    bf16_conversions = min(sass.count("F2I") for sass in kernels if sass not in int8)
    for sass in int8:
        assert "STG.E.128" in sass  # a warp writes its entry's 2 KiB of int8 parts as 16-byte stores
        assert sass.count("F2I") <= bf16_conversions  # v10t's codec: no float -> int conversion per element


HALF_PAGE_CHECK = r"""
#include <cstdio>
#include "msa_sm90_common.cuh"
using namespace cute;
using namespace msa_sm90_common;
// v13t: variant 9 slices the page's K as the kernel does; every (key, d, stage) of each half must be the page's
// element (64 h + key, d, stage), for 1 and 2 K/V stages
template <int S>
int mismatches() {
  static Element buf[cosize_v<SmemLayoutK<S>>];
  Tensor sK = make_tensor(make_smem_ptr(buf), SmemLayoutK<S>{});
  auto h0 = local_tile(sK, Shape<Int<kKeys / 2>, Int<kHeadDim>>{}, make_coord(_0{}, _0{}));
  auto h1 = local_tile(sK, Shape<Int<kKeys / 2>, Int<kHeadDim>>{}, make_coord(_1{}, _0{}));
  int bad = 0;
  for (int k = 0; k < kKeys / 2; ++k)
    for (int d = 0; d < kHeadDim; ++d)
      for (int s = 0; s < S; ++s)
        bad += (&h0(k, d, s) != &sK(k, d, s)) + (&h1(k, d, s) != &sK(kKeys / 2 + k, d, s));
  return bad;
}
int main() { std::printf("%d\n", mismatches<1>() + mismatches<2>()); }
"""


@pytest.mark.skipif(bool(cuda_toolchain_missing()), reason=f"cannot build: {cuda_toolchain_missing()}")
def test_half_page_k_slices_address_the_page_rows(tmp_path):
    """v13t: variant 9's two 64-key halves of K (CuTe's local_tile of the swizzled page layout) are the page's rows
    0-63 and 64-127, checked element by element on the host (nvcc, no GPU)."""
    src = tmp_path / "half_page.cu"
    src.write_text(HALF_PAGE_CHECK)
    exe = tmp_path / "half_page"
    subprocess.run([str(cuda.find_nvcc()), "-std=c++17", "--expt-relaxed-constexpr", f"-I{cuda.cutlass_include()}",
                    f"-I{cuda.HERE}", str(src), "-o", str(exe)], check=True, capture_output=True)
    assert subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.strip() == "0"


def test_software_exp2_is_as_accurate_as_ex2_approx():
    """v13t: variant 8's 2^x, emulated step by step in fp32, against the exact 2^x on the range the kernel sees
    (x <= 0 after the row maximum; -inf for masked keys)."""
    import numpy as np

    dense = np.linspace(-126.0, 0.0, 1_000_001, dtype=np.float32)
    near_zero = np.arange(0x80000000, int(np.float32(-2.0).view(np.uint32)), 997, dtype=np.uint32).view(np.float32)
    ties = -np.arange(0, 252, dtype=np.float32) / 2  # n + 0.5: rint's ties to even
    for x in (dense, near_zero, ties):
        assert exp2_poly.relative_error(x) <= 2.5e-7  # ex2.approx.ftz: ~2^-22 = 2.4e-7
    special = exp2_poly.exp2_emulated(np.array([0.0, -0.0, -127.0, -300.0, -3e38, -np.inf], dtype=np.float32))
    assert special[0] == special[1] == 1.0 and np.all(special[2:] == 0.0)  # the maximum gives 1, masked keys 0
    tiny = exp2_poly.exp2_emulated(np.linspace(-127.0, -126.0, 10_001, dtype=np.float32))
    assert np.all(tiny >= 0.0) and np.all(tiny < 2.0**-125)  # under 2^-126 (ex2.approx.ftz: 0): never negative
    deg3 = tuple(float(np.float32(c)) for c in exp2_poly.fit_coefficients(3))
    assert exp2_poly.relative_error(dense, deg3) > 1e-5  # the check tells a cheaper polynomial apart (1.0e-4)
    assert np.allclose(exp2_poly.fit_coefficients(len(exp2_poly.COEFFS)), exp2_poly.COEFFS, rtol=1e-4, atol=0)
    in_kernel = np.float32(exp2_poly.coefficients_in_source())
    assert len(in_kernel) == len(exp2_poly.COEFFS) and np.array_equal(in_kernel, np.float32(exp2_poly.COEFFS))


def m3_inputs(dtype=torch.bfloat16):
    return torch.zeros(8, 64, 128, dtype=dtype), torch.zeros(3, 4, 128, 256, dtype=dtype)


def test_kv_inputs_it_cannot_take_are_named():
    q, kv = m3_inputs()
    assert cuda.check_kv_inputs(q, kv, None) == [] and cuda.check_kv_inputs(q, kv, torch.bfloat16) == []
    assert cuda.check_kv_inputs(q, kv, torch.int8) == []  # v12n: int8 parts on CUDA too
    assert "bf16 or int8 partials only" in "; ".join(cuda.check_kv_inputs(q, kv, torch.float16))
    assert "bf16 q / kv cache" in "; ".join(cuda.check_kv_inputs(q, kv.to(torch.float8_e4m3fn), None))
    text = "; ".join(cuda.check_kv_inputs(torch.zeros(8, 32, 64), torch.zeros(3, 4, 128, 128), None))
    assert "bf16" in text and "head_dim 128" in text
    grouped = cuda.check_kv_inputs(torch.zeros(8, 32, 128, dtype=torch.bfloat16), kv, None)
    assert grouped and "16 query heads per KV head" in grouped[0]
    strided = torch.zeros(8, 64, 130, dtype=torch.bfloat16)[:, :, 1:129]
    assert "16-byte aligned" in "; ".join(cuda.check_kv_inputs(strided, kv, None))
    table, lens = torch.zeros(1, 1, dtype=torch.int32), torch.zeros(1, dtype=torch.int32)
    with pytest.raises(ValueError, match="scales"):
        cuda.kv_outer_partials_cuda(q, kv, table, lens, None, None, 16, 1.0, 128, k_scale=0.5)
    with pytest.raises(ValueError, match="variant must be one of"):
        cuda.kv_outer_partials_cuda(q, kv, table, lens, None, None, 16, 1.0, 128, variant=5)
    with pytest.raises(ValueError, match="variant must be one of"):  # v13q's timing diagnostics: bf16 only
        cuda.kv_outer_partials_cuda(q, kv, table, lens, None, None, 16, 1.0, 128, variant=90,
                                    partial_dtype=torch.int8)
    assert cuda.KV_DEFAULT_INT8_VARIANT in cuda.KV_INT8_VARIANTS and cuda.KV_DEFAULT_VARIANT in cuda.KV_VARIANTS
    with pytest.raises(ValueError, match="2\\^31 or more selection entries"):  # checked before any allocation
        cuda.kv_outer_partials_cuda(q, kv, table, lens, None, None, 2 ** 26, 1.0, 128)


def test_kv_policy_reasons_are_logged_once_and_never_build(fresh_policy, monkeypatch, caplog):
    monkeypatch.setattr(cuda, "build", lambda *_a, **_k: pytest.fail("a call must not build"))
    q, kv = m3_inputs()
    assert "not CUDA" in cuda.choose_kv(q, kv)  # CPU tensors
    monkeypatch.setattr(cuda, "device_reason", lambda _device: None)  # as on an H200
    monkeypatch.setattr(cuda, "find_nvcc", lambda: Path("/usr/bin/true"))
    monkeypatch.setattr(cuda, "cutlass_include", lambda *_a: Path("/"))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kernels.msa.cuda"):
        for _ in range(3):
            reason = cuda.choose_kv(q, kv)
    assert reason and "python -m kernels.msa.cuda build" in reason
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("MSA KV-outer step on Triton:")
    assert "scales (fp8 cache)" in cuda.choose_kv(q, kv, k_scale=0.5, v_scale=2.0)
    assert "int8" not in cuda.choose_kv(q, kv, torch.int8)  # v12n: only the missing library stops int8
    monkeypatch.setattr(cuda, "library_reason", lambda *_a: None)  # built and loadable
    assert cuda.choose_kv(q, kv) is None and cuda.choose_kv(q, kv, torch.int8) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU tensors under the interpreter (the GPU tests cover auto)")
def test_prefill_kv_impl_on_cpu_runs_triton_and_rejects_unknown_impl():
    from kernels.msa.inputs import local_selection, make_case
    from kernels.msa.prefill import sparse_attention_triton

    case = make_case([40], [40], 4, 2, 32, torch.float32, "cpu", seed=1)
    sel = local_selection(case.query_start_loc, case.seq_lens, 2, 1.0, seed=2)
    args = (case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens)
    auto = sparse_attention_triton(*args, max_union=0)
    assert torch.equal(auto, sparse_attention_triton(*args, max_union=0, kv_impl="triton"))
    with pytest.raises(ValueError, match="kv_impl must be one of"):
        sparse_attention_triton(*args, kv_impl="cutlass")


def _gpu_hopper() -> None:
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("sm_90a kernel: needs a Hopper GPU")


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU (sm_90)")
@pytest.mark.parametrize(("chunk", "window", "per_sm"), [(128, 0, 1), (5, 0, 1), (128, 256, 1), (128, 0, 0)])
@pytest.mark.parametrize("variant", sorted(cuda.KV_VARIANTS), ids=_variant_id)
def test_cuda_kv_outer_matches_triton(chunk, window, per_sm, variant):
    from kernels.bench.kv_outer_cuda_bench import all_csr, stage_runner
    from kernels.msa.inputs import local_selection, make_case

    _gpu_hopper()
    # two requests, the second a chunk after 400 tokens of context; slots in any order; ~15 % of entries -1
    case = make_case([700, 1500], [700, 1100], 64, 4, 128, torch.bfloat16, "cuda", seed=3)
    sel = local_selection(case.query_start_loc, case.seq_lens, 4, 0.9, seed=5)
    sel = sel[:, :, torch.randperm(sel.shape[2], device="cuda")]
    drop = torch.rand(sel.shape, device="cuda") < 0.15
    sel = torch.where(drop, -1, sel).contiguous()
    csr, pos = all_csr(case, sel, chunk, window)
    fn_t, got_t = stage_runner(case, csr, pos, 16, "triton", chunk)
    fn_c, got_c = stage_runner(case, csr, pos, 16, "cuda", chunk, per_sm, poison=True, variant=variant)
    fn_t()
    fn_c()
    (po_t, lse_t), (po_c, lse_c) = got_t, got_c
    listed = (sel >= 0)
    assert rel_err(po_c[listed], po_t[listed].float()) < TOL
    fin = listed[..., None] & torch.isfinite(lse_t)
    assert float((lse_c[fin] - lse_t[fin]).abs().max()) < 1e-2
    assert torch.equal(torch.isinf(lse_c[listed]), torch.isinf(lse_t[listed]))  # no visible key: -inf, both
    assert bool(torch.isnan(po_c[~listed]).all()) and bool(torch.isnan(lse_c[~listed]).all())  # -1: never written


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU (sm_90)")
@pytest.mark.parametrize(("chunk", "window", "per_sm"), [(128, 0, 1), (5, 0, 1), (128, 256, 1)])
@pytest.mark.parametrize("variant", sorted(cuda.KV_INT8_VARIANTS), ids=_variant_id)
def test_cuda_kv_outer_int8_parts_match_triton(chunk, window, per_sm, variant):
    from kernels.bench.kv_outer_cuda_bench import ROWS, all_csr, compare_stage_int8
    from kernels.msa.inputs import local_selection, make_case

    _gpu_hopper()
    case = make_case([700, 1500], [700, 1100], 64, 4, 128, torch.bfloat16, "cuda", seed=3)
    sel = local_selection(case.query_start_loc, case.seq_lens, 4, 0.9, seed=5)
    sel = sel[:, :, torch.randperm(sel.shape[2], device="cuda")]
    sel = torch.where(torch.rand(sel.shape, device="cuda") < 0.15, -1, sel).contiguous()
    csr, pos = all_csr(case, sel, chunk, window)
    assert compare_stage_int8(case, sel, csr, pos, "test", None, chunk, per_sm, variant), ROWS[-1]


@functools.cache
def _prefill_case(kind: str):
    """The prefill check's inputs, fp32 reference and Triton outputs (bf16 and int8 parts; per max_union: the
    default adaptive path and KV-outer only), built once per selection kind for every variant (v13t)."""
    from kernels.msa import sparse_attention
    from kernels.msa.indexer import msa_index_topk_triton
    from kernels.msa.inputs import local_selection, make_case
    from kernels.msa.prefill import sparse_attention_triton
    from kernels.msa.tile_outer import DEFAULT_MAX_UNION

    n = 2048
    case = make_case([n // 2, n], [n // 2, n // 2], 64, 4, 128, torch.bfloat16, "cuda", seed=21)
    if kind == "indexer":
        sel = msa_index_topk_triton(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc,
                                    case.seq_lens, max_query_len=n // 2)
    else:
        sel = local_selection(case.query_start_loc, case.seq_lens, 4, 0.9, seed=22)
    args = (case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens)
    ref = sparse_attention(case.q.cpu(), case.kv_cache.cpu(), sel.cpu(), case.block_table.cpu(),
                           case.query_start_loc.cpu(), case.seq_lens.cpu())
    want = {max_union: (sparse_attention_triton(*args, kv_impl="triton", max_union=max_union).float(),
                        sparse_attention_triton(*args, kv_impl="triton", max_union=max_union,
                                                partial_dtype=torch.int8).float())
            for max_union in (DEFAULT_MAX_UNION, 0)}
    return args, ref, want


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU (sm_90)")
@pytest.mark.parametrize("variant", PREFILL_VARIANTS, ids=_variant_id)
@pytest.mark.parametrize("kind", ["indexer", "0.9"])
def test_prefill_with_cuda_kv_outer_matches_triton_and_reference(kind, variant, monkeypatch):
    from kernels.msa.prefill import sparse_attention_triton

    _gpu_hopper()
    monkeypatch.setattr(cuda, "KV_DEFAULT_VARIANT", variant)  # v13t: each new variant as the default
    monkeypatch.setattr(cuda, "KV_DEFAULT_INT8_VARIANT", variant)
    args, ref, want = _prefill_case(kind)
    for max_union, (want16, want8) in want.items():  # the default adaptive path, KV-outer only
        got = torch.full_like(args[0], float("nan"))
        sparse_attention_triton(*args, out=got, kv_impl="cuda", max_union=max_union)
        assert rel_err(got, want16) < TOL and rel_err(got, ref) < TOL, max_union
        # v12n: int8 parts from the CUDA kernel, then the merge / fused fold of int8 parts
        got8 = torch.full_like(args[0], float("nan"))
        sparse_attention_triton(*args, out=got8, kv_impl="cuda", max_union=max_union, partial_dtype=torch.int8)
        assert rel_err(got8, want8) < TOL and rel_err(got8, ref) < TOL, max_union


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU (sm_90)")
@pytest.mark.parametrize("variant", PREFILL_VARIANTS, ids=_variant_id)
def test_cuda_kv_outer_replays_from_a_cuda_graph(variant, monkeypatch):
    from kernels.bench.kv_outer_cuda_bench import ROWS, check_graph

    _gpu_hopper()
    monkeypatch.setattr(cuda, "KV_DEFAULT_VARIANT", variant)
    check_graph(None)
    assert ROWS[-1]["replay_vs_eager"] < 1e-6
