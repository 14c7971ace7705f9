"""The sm_90a CUDA tile-outer kernel (kernels/msa/cuda): it compiles for sm_90a with nvcc and uses wgmma (CPU, skipped
without nvcc or the CUTLASS headers), it names every input it cannot take (CPU), and on a GPU (marked `gpu`) the
adaptive prefill with it matches the Triton path on every token and the fp32 reference, for each compiled variant."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from kernels.msa import cuda
from tests.kernels.msa.checks import GPU, TOL, assert_step_writes_like, cuda_toolchain_missing, rel_err

BF16_VARIANTS = sorted(v for v in cuda.VARIANTS if v not in cuda.FP8_VARIANTS)
"""The variants that read a bf16 cache (the FP8 ones, v18, are tested in test_fp8_step.py)."""
PERSISTENT_VARIANTS = [v for v in BF16_VARIANTS if v >= 5]
"""The variants made for the persistent grid (today only the default, 5): the default path's tests run with each of
them as the default."""


@pytest.mark.skipif(bool(cuda_toolchain_missing()), reason=f"cannot build: {cuda_toolchain_missing()}")
def test_kernel_compiles_for_sm90a(built_library):
    lib = built_library
    assert lib.is_file()
    assert cuda.build(cache_dir=lib.parent) == lib  # cached: same sources, same library
    import triton

    cuobjdump = shutil.which("cuobjdump") or Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    if not Path(cuobjdump).is_file():
        pytest.skip("no cuobjdump to read the SASS")
    sass = subprocess.run([str(cuobjdump), "-sass", str(lib)], capture_output=True, text=True, check=True).stdout
    assert "HGMMA.64x128x16.F32.BF16" in sass  # wgmma, the Hopper tensor-core path (not mma.sync)
    assert "UTMALDG" in sass  # K/V pages by TMA
    assert "USETMAXREG" in sass  # producer / consumer register reallocation took effect
    assert "LDL" not in sass and "STL" not in sass  # no spills to local memory


def test_inputs_it_cannot_take_are_named():
    q = torch.zeros(8, 32, 64, dtype=torch.float32)
    kv = torch.zeros(3, 4, 128, 128, dtype=torch.float32)
    po = torch.zeros(4, 8, 16, 8, 64).transpose(0, 1)
    problems = cuda.check_inputs(q, kv, po, tile_t=4)
    text = "; ".join(problems)
    assert "bf16" in text and "head_dim 128" in text and "contiguous" in text
    m3 = (torch.zeros(8, 64, 128, dtype=torch.bfloat16), torch.zeros(3, 4, 128, 256, dtype=torch.bfloat16),
          torch.zeros(4, 8, 16, 16, 128, dtype=torch.bfloat16))
    assert cuda.check_inputs(*m3, 8) == []
    shifted = torch.zeros(4 * 8 * 16 * 16 * 128 + 1, dtype=torch.bfloat16)[1:].view(4, 8, 16, 16, 128)
    assert "16-byte aligned" in "; ".join(cuda.check_inputs(*m3[:2], shifted, 8))
    assert "tiles of 128 rows (8 tokens)" in "; ".join(cuda.check_inputs(*m3, 4))
    grouped = cuda.check_inputs(torch.zeros(8, 16, 128, dtype=torch.bfloat16),
                                torch.zeros(3, 4, 128, 256, dtype=torch.bfloat16),
                                torch.zeros(4, 8, 16, 4, 128, dtype=torch.bfloat16), 8)
    assert grouped and "16 or 8 query heads per KV head" in grouped[0]
    # v18r: 8 query heads per KV head (M3 at TP 8) in 16-token tiles (128 rows), and only those
    tp8 = (torch.zeros(8, 32, 128, dtype=torch.bfloat16), torch.zeros(3, 4, 128, 256, dtype=torch.bfloat16),
           torch.zeros(4, 8, 16, 8, 128, dtype=torch.bfloat16))
    assert cuda.check_inputs(*tp8, 16) == []
    assert "tiles of 128 rows (16 tokens)" in "; ".join(cuda.check_inputs(*tp8, 8))
    wide = cuda.check_inputs(torch.zeros(8, 64, 128, dtype=torch.bfloat16),
                             torch.zeros(3, 4, 128, 256, dtype=torch.bfloat16),
                             torch.zeros(4, 8, cuda.MAX_FOLD_SLOTS + 1, 16, 128, dtype=torch.bfloat16), 8)
    assert wide and "top_k <= 32" in wide[0]  # the fused merge loads a row's slots in one batch (v16)


def test_fused_merge_refuses_unaligned_lse_and_scales():
    """v18s / v18t: the fused merge stages a row's LSEs and int8 scales by 16-byte copies, so both must be aligned;
    refused before any launch (no GPU needed)."""
    q, kv = torch.zeros(8, 64, 128, dtype=torch.bfloat16), torch.zeros(3, 4, 128, 256, dtype=torch.bfloat16)
    po = torch.zeros(4, 8, 16, 16, 128, dtype=torch.int8)
    n = 4 * 8 * 16 * 16
    aligned = torch.zeros(n, dtype=torch.float32).view(4, 8, 16, 16)
    shifted = torch.zeros(n + 1, dtype=torch.float32)[1:].view(4, 8, 16, 16)
    for lse, scale, what in ((shifted, aligned, "partial_lse"), (aligned, shifted, "partial_scale")):
        with pytest.raises(ValueError, match=f"{what} must be contiguous and 16-byte aligned"):
            cuda.tile_outer_attention_cuda(q, kv, None, None, None, None, 1.0, torch.empty_like(q), po, lse,
                                           fuse_merge=True, partial_scale=scale)


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU (sm_90)")
@pytest.mark.parametrize("variant", BF16_VARIANTS)
@pytest.mark.parametrize("per_sm", [0, 1])
@pytest.mark.parametrize("shared", [1.0, 0.3])
def test_cuda_tile_outer_matches_triton(variant, per_sm, shared, monkeypatch):
    from kernels.bench.tile_outer_cuda_bench import tile_outer_runner
    from kernels.msa import sparse_attention
    from kernels.msa.inputs import local_selection, make_case
    from kernels.msa.prefill import sparse_attention_triton

    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("sm_90a kernel: needs a Hopper GPU")
    # two requests (the second a chunk after 400 tokens of context): request 0's last tile is short (700 = 87 x 8 + 4)
    case = make_case([700, 1500], [700, 1100], 64, 4, 128, torch.bfloat16, "cuda", seed=int(shared * 10) + variant)
    sel = local_selection(case.query_start_loc, case.seq_lens, 4, shared, seed=7)
    sel = sel[:, :, torch.randperm(sel.shape[2], device="cuda")].contiguous()  # slots in any order
    # the kernel alone: direct rows and carrier parts (+ LSE) as the Triton kernel writes them, nothing else
    fn_t, (out_t, po_t, lse_t), split, _ = tile_outer_runner(case, sel, "triton")
    fn_c, (out_c, po_c, lse_c), _, _ = tile_outer_runner(case, sel, "cuda", variant=variant, per_sm=per_sm)
    fn_t()
    fn_c()
    assert_step_writes_like(split, 16, (out_t, po_t, lse_t), (out_c, po_c, lse_c))
    # the whole adaptive prefill with this variant as the default (unfused and with the fused merge), against Triton
    # and the fp32 reference
    monkeypatch.setattr(cuda, "DEFAULT_VARIANT", variant)
    args = (case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens)
    ref = sparse_attention(case.q.cpu(), case.kv_cache.cpu(), sel.cpu(), case.block_table.cpu(),
                           case.query_start_loc.cpu(), case.seq_lens.cpu())
    assert cuda.choose(case.q, case.kv_cache, po_c, 8) is None  # built and loaded: auto takes the CUDA step
    want = sparse_attention_triton(*args, tile_impl="triton").float()
    for impl, fuse in (("cuda", False), ("cuda", True), ("auto", None)):  # auto: the CUDA step, fused (v11)
        got = torch.full_like(case.q, float("nan"))
        sparse_attention_triton(*args, out=got, tile_impl=impl, fuse_merge=fuse)
        assert rel_err(got, want) < TOL and rel_err(got, ref) < TOL, (impl, fuse)


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU (sm_90)")
@pytest.mark.parametrize("shared", [0.9, 0.3])
@pytest.mark.parametrize("variant", PERSISTENT_VARIANTS)
def test_cuda_step_with_int8_partials(shared, variant, monkeypatch):
    """v12m: int8 KV-outer partials with the CUDA step. Unfused, the kernel writes its carrier parts to the bf16 side
    buffer (as the Triton kernel does, the int8 partials untouched); fused, it decodes the int8 parts on chip. The
    whole prefill (cuda unfused / fused, auto, Triton) matches the bf16 path and the fp32 reference."""
    from kernels.bench.tile_outer_cuda_bench import split_for
    from kernels.msa import sparse_attention
    from kernels.msa.cuda import tile_outer_attention_cuda
    from kernels.msa.inputs import local_selection, make_case
    from kernels.msa.merge import CarrierParts
    from kernels.msa.prefill import sparse_attention_triton
    from kernels.msa.tile_outer import tile_outer_attention

    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("sm_90a kernel: needs a Hopper GPU")
    monkeypatch.setattr(cuda, "DEFAULT_VARIANT", variant)  # the step alone and the whole prefill below
    # contexts longer than 16 blocks, so tokens' selections differ and tiles have carrier parts and KV-outer parts
    case = make_case([3000, 6000], [700, 1100], 64, 4, 128, torch.bfloat16, "cuda", seed=int(shared * 10) + 31)
    sel = local_selection(case.query_start_loc, case.seq_lens, 4, shared, seed=8)
    sel = sel[:, :, torch.randperm(sel.shape[2], device="cuda")].contiguous()  # slots in any order
    sel[1, 100, 3] = -1  # a hole
    split, pos, req = split_for(case, sel)
    n = case.q.shape[0]
    sides = []
    for impl in ("triton", "cuda"):  # the step alone: carrier parts into the side buffer, int8 partials untouched
        out = torch.full_like(case.q, float("nan"))
        po = torch.full((4, n, 16, 16, 128), 7, dtype=torch.int8, device="cuda")
        plse = torch.full(po.shape[:-1], float("nan"), device="cuda")
        scale = torch.full(po.shape[:-1], float("nan"), device="cuda")
        side = CarrierParts.empty(split.carrier, 16, 128, torch.bfloat16)
        side.lse.fill_(float("nan"))
        args = (case.q, case.kv_cache, case.seq_lens, pos, req, split, 128 ** -0.5, out, po, plse)
        if impl == "cuda":
            tile_outer_attention_cuda(*args, partial_scale=scale, carrier_parts=side)
        else:
            tile_outer_attention(*args, partial_scale=scale, carrier_parts=side)
        torch.cuda.synchronize()
        assert bool((po == 7).all()) and bool(plse.isnan().all()), impl
        sides.append((out, side))
    (out_t, side_t), (out_c, side_c) = sides
    written = ~side_t.lse.isnan()
    assert bool(written.any()) and torch.equal(written, ~side_c.lse.isnan())
    assert rel_err(side_c.o[written], side_t.o[written].float()) < TOL
    assert float((side_c.lse[written] - side_t.lse[written]).abs().max()) < 1e-3
    assert torch.equal(out_t.isnan(), out_c.isnan())
    # the whole prefill
    args = (case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens)
    ref = sparse_attention(case.q.cpu(), case.kv_cache.cpu(), sel.cpu(), case.block_table.cpu(),
                           case.query_start_loc.cpu(), case.seq_lens.cpu())
    po8 = torch.empty(4, n, 16, 16, 128, dtype=torch.int8, device="cuda")
    assert cuda.choose(case.q, case.kv_cache, po8, 8) is None  # auto takes the CUDA step with int8 partials
    want = sparse_attention_triton(*args, tile_impl="triton").float()
    for impl, fuse in (("cuda", False), ("cuda", True), ("auto", None), ("triton", None), ("triton", True)):
        got = torch.full_like(case.q, float("nan"))
        sparse_attention_triton(*args, out=got, tile_impl=impl, fuse_merge=fuse, partial_dtype=torch.int8)
        err, diff = rel_err(got, ref), rel_err(got, want)
        print(f"int8 partials, f={shared}, {impl} fuse={fuse}: ref err {err:.2e}, vs bf16 Triton path {diff:.2e}")
        assert err < TOL and diff < TOL, (impl, fuse)


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU (sm_90)")
@pytest.mark.parametrize("variant", PERSISTENT_VARIANTS)
def test_default_prefill_replays_from_a_cuda_graph(variant, monkeypatch):
    """The default path (tile_impl="auto": the CUDA step with the fused merge on an H200) has no host sync: it
    captures into a CUDA graph (as vLLM's piecewise graphs would) and a replay on new inputs gives the eager result."""
    from kernels.msa.inputs import local_selection, make_case
    from kernels.msa.prefill import sparse_attention_triton

    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("sm_90a kernel: needs a Hopper GPU")
    monkeypatch.setattr(cuda, "DEFAULT_VARIANT", variant)
    case = make_case([1500], [1500], 64, 4, 128, torch.bfloat16, "cuda", seed=11)
    sel = local_selection(case.query_start_loc, case.seq_lens, 4, 0.9, seed=12)
    args = (case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens)
    out = torch.empty_like(case.q)
    sparse_attention_triton(*args, out=out)  # warm-up: compiles, loads the library
    assert cuda.choose(case.q, case.kv_cache, torch.empty(4, 1500, 16, 16, 128, dtype=torch.bfloat16,
                                                          device="cuda"), 8) is None
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        sparse_attention_triton(*args, out=out)
    case.q.copy_(torch.randn_like(case.q))  # new inputs in the captured buffers
    sel.copy_(local_selection(case.query_start_loc, case.seq_lens, 4, 1.0, seed=13))
    graph.replay()
    torch.cuda.synchronize()
    want = sparse_attention_triton(*args, tile_impl="triton")
    assert rel_err(out, want.float()) < TOL
