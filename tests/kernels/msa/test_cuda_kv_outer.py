"""The sm_90a CUDA KV-outer kernel (kernels/msa/cuda/kv_outer_sm90.cu, v12k): it compiles for sm_90a in the shared
library with wgmma, TMA loads and TMA stores and no spills (CPU, skipped without nvcc or the CUTLASS headers); the
``kv_impl`` policy names every input it cannot take, logs once and never builds in a call (CPU); on a GPU (marked
`gpu`) its partials match the Triton kernel's entry by entry into poisoned buffers, and the whole prefill with it
matches Triton and the fp32 reference, also replayed from a CUDA graph. v12n: the metadata-warp variants and int8
parts in ``merge.store_part``'s format (each int8 value within one quantum of the Triton int8 kernel's, unlisted
entries untouched), the whole prefill with int8 parts on CUDA vs Triton and the reference. v13q: the fast-softmax
variants (approximate log2 / reciprocal, no division slow path in the bf16 ones) and the timing diagnostics compile
without spills; the diagnostics refuse int8 parts."""
from __future__ import annotations

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
from tests.kernels.msa.checks import GPU, TOL, cuda_toolchain_missing, rel_err


def _kernel_sass(sass: str, name: str) -> list[str]:
    """The SASS of each function whose mangled name contains ``name`` (cuobjdump prints one section each)."""
    sections = sass.split("Function : ")
    return [s for s in sections[1:] if name in s.splitlines()[0]]


@pytest.mark.skipif(bool(cuda_toolchain_missing()), reason=f"cannot build: {cuda_toolchain_missing()}")
def test_kv_outer_kernel_compiles_into_the_shared_library(built_library):
    lib = built_library
    assert {p.name for p in cuda.SOURCES} == {"tile_outer_sm90.cu", "kv_outer_sm90.cu"}  # one library, one hash
    import triton

    cuobjdump = shutil.which("cuobjdump") or Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    if not Path(cuobjdump).is_file():
        pytest.skip("no cuobjdump to read the SASS")
    every = _kernel_sass(subprocess.run([str(cuobjdump), "-sass", str(lib)], capture_output=True, text=True,
                                         check=True).stdout, "kv_outer_kernel")
    # v13q: kv_outer_kernel<kv stages, q stages, int8, diag, fast, group>; diag != 0 are the timing diagnostics
    # (bf16); v18r: group 8 (M3 at TP 8) for the default variant 7, bf16 and int8 parts
    diag = [sass for sass in every if "ELi0ELb" not in sass.splitlines()[0]]
    kernels = [sass for sass in every if sass not in diag]
    assert len(diag) == len(cuda.KV_DIAG_VARIANTS)
    group8 = 2 * len(cuda.KV_GROUP8_VARIANTS)
    assert len(kernels) == len(cuda.KV_VARIANTS) + len(cuda.KV_INT8_VARIANTS) + group8  # bf16 and int8 parts
    assert sum("ELi8EEEv" in sass.splitlines()[0] for sass in kernels) == group8
    fast = [sass for sass in kernels if re.search(r"ELb1ELi(16|8)EEEv", sass.splitlines()[0])]
    assert len(fast) == 4 + group8  # variants 6 and 7, bf16 and int8: the softmax with lg2 / rcp approximations
    for sass in fast:
        assert "MUFU.LG2" in sass and "MUFU.RCP" in sass
        if "UTMASTG" in sass:  # bf16 parts: no IEEE division slow path left (int8 keeps 127 / max|o| exact)
            assert "CALL.REL" not in sass
    for sass in diag:
        assert "LDL" not in sass and "STL" not in sass
    int8 = [sass for sass in kernels if "UTMASTG" not in sass]
    # bf16 parts leave by TMA store, int8 parts by 16-byte stores
    assert len(int8) == len(cuda.KV_INT8_VARIANTS) + len(cuda.KV_GROUP8_VARIANTS)
    for sass in kernels:
        assert "HGMMA.64x128x16.F32.BF16" in sass  # S = Q K^T and O = P V on wgmma
        assert "UTMALDG.4D" in sass and "UTMALDG.5D" in sass  # K/V pages and the gathered Q boxes by TMA
        assert "USETMAXREG" in sass  # producer / consumer register reallocation
        assert "LDL" not in sass and "STL" not in sass  # no spills to local memory
    bf16_conversions = min(sass.count("F2I") for sass in kernels if sass not in int8)
    for sass in int8:
        assert "STG.E.128" in sass  # a warp writes its entry's 2 KiB of int8 parts as 16-byte stores
        assert sass.count("F2I") <= bf16_conversions  # v10t's codec: no float -> int conversion per element


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
    grouped = cuda.check_kv_inputs(torch.zeros(8, 16, 128, dtype=torch.bfloat16), kv, None)
    assert grouped and "16 or 8 query heads per KV head" in grouped[0]
    assert cuda.check_kv_inputs(torch.zeros(8, 32, 128, dtype=torch.bfloat16), kv, None) == []  # v18r: M3 at TP 8
    strided = torch.zeros(8, 64, 130, dtype=torch.bfloat16)[:, :, 1:129]
    assert "16-byte aligned" in "; ".join(cuda.check_kv_inputs(strided, kv, None))
    table, lens = torch.zeros(1, 1, dtype=torch.int32), torch.zeros(1, dtype=torch.int32)
    with pytest.raises(ValueError, match="scales"):
        cuda.kv_outer_partials_cuda(q, kv, table, lens, None, None, 16, 1.0, 128, k_scale=0.5)
    with pytest.raises(ValueError, match="variant must be one of"):
        cuda.kv_outer_partials_cuda(q, kv, table, lens, None, None, 16, 1.0, 128, variant=8)
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
@pytest.mark.parametrize(("variant", "group"), [(v, 16) for v in sorted(cuda.KV_VARIANTS)]
                         + [(v, 8) for v in cuda.KV_GROUP8_VARIANTS])
def test_cuda_kv_outer_matches_triton(chunk, window, per_sm, variant, group):
    """Group 16 (M3 at TP <= 4) and 8 (TP 8, v18r: two entries per consumer warp)."""
    from kernels.bench.kv_outer_cuda_bench import all_csr, stage_runner
    from kernels.msa.inputs import local_selection, make_case

    _gpu_hopper()
    # two requests, the second a chunk after 400 tokens of context; slots in any order; ~15 % of entries -1
    case = make_case([700, 1500], [700, 1100], 4 * group, 4, 128, torch.bfloat16, "cuda", seed=3)
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
@pytest.mark.parametrize(("variant", "group"), [(v, 16) for v in sorted(cuda.KV_INT8_VARIANTS)]
                         + [(v, 8) for v in cuda.KV_GROUP8_VARIANTS])
def test_cuda_kv_outer_int8_parts_match_triton(chunk, window, per_sm, variant, group):
    from kernels.bench.kv_outer_cuda_bench import ROWS, all_csr, compare_stage_int8
    from kernels.msa.inputs import local_selection, make_case

    _gpu_hopper()
    case = make_case([700, 1500], [700, 1100], 4 * group, 4, 128, torch.bfloat16, "cuda", seed=3)
    sel = local_selection(case.query_start_loc, case.seq_lens, 4, 0.9, seed=5)
    sel = sel[:, :, torch.randperm(sel.shape[2], device="cuda")]
    sel = torch.where(torch.rand(sel.shape, device="cuda") < 0.15, -1, sel).contiguous()
    csr, pos = all_csr(case, sel, chunk, window)
    assert compare_stage_int8(case, sel, csr, pos, "test", None, chunk, per_sm, variant), ROWS[-1]


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU (sm_90)")
@pytest.mark.parametrize("kind", ["indexer", "0.9"])
@pytest.mark.parametrize("group", [16, 8])
def test_prefill_with_cuda_kv_outer_matches_triton_and_reference(kind, group):
    from kernels.msa import sparse_attention
    from kernels.msa.indexer import msa_index_topk_triton
    from kernels.msa.inputs import local_selection, make_case
    from kernels.msa.prefill import sparse_attention_triton
    from kernels.msa.tile_outer import DEFAULT_MAX_UNION

    _gpu_hopper()
    n = 2048
    case = make_case([n // 2, n], [n // 2, n // 2], 4 * group, 4, 128, torch.bfloat16, "cuda", seed=21)
    if kind == "indexer":
        sel = msa_index_topk_triton(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc,
                                    case.seq_lens, max_query_len=n // 2)
    else:
        sel = local_selection(case.query_start_loc, case.seq_lens, 4, 0.9, seed=22)
    args = (case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens)
    ref = sparse_attention(case.q.cpu(), case.kv_cache.cpu(), sel.cpu(), case.block_table.cpu(),
                           case.query_start_loc.cpu(), case.seq_lens.cpu())
    for max_union in (DEFAULT_MAX_UNION, 0):  # the default adaptive path, KV-outer only
        want = sparse_attention_triton(*args, kv_impl="triton", max_union=max_union).float()
        got = torch.full_like(case.q, float("nan"))
        sparse_attention_triton(*args, out=got, kv_impl="cuda", max_union=max_union)
        assert rel_err(got, want) < TOL and rel_err(got, ref) < TOL, max_union
        # v12n: int8 parts from the CUDA kernel, then the merge / fused fold of int8 parts
        want8 = sparse_attention_triton(*args, kv_impl="triton", max_union=max_union, partial_dtype=torch.int8)
        got8 = torch.full_like(case.q, float("nan"))
        sparse_attention_triton(*args, out=got8, kv_impl="cuda", max_union=max_union, partial_dtype=torch.int8)
        assert rel_err(got8, want8.float()) < TOL and rel_err(got8, ref) < TOL, max_union


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU (sm_90)")
def test_cuda_kv_outer_replays_from_a_cuda_graph():
    from kernels.bench.kv_outer_cuda_bench import ROWS, check_graph

    _gpu_hopper()
    check_graph(None)
    assert ROWS[-1]["replay_vs_eager"] < 1e-6
