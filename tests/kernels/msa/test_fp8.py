"""FP8 (e4m3, per-tensor scale) KV cache in the decode and prefill kernels (in-kernel or widened pages, v17): exact against the fp32 reference on the
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


def _shared_page_case():
    """Three requests, the second and third sharing their first page (prefix caching), the block table padded with
    pages other requests own (never read), and a spare page no request reads."""
    case = make_case([700, 300, 260], [700, 40, 3], num_heads=16, num_kv_heads=2, head_dim=HEAD_DIM, dtype=DTYPE,
                     device=DEVICE, seed=34)
    table = case.block_table.clone()
    table[2, 0] = table[1, 0]
    return case, table


def test_page_slots_number_each_read_page_once():
    from kernels.msa.widen import page_slots

    case, table = _shared_page_case()
    num_pages = case.kv_cache.shape[0]
    slots = page_slots(table, case.seq_lens, num_pages).cpu()
    read = {int(table[r, j]) for r, n in enumerate(case.seq_lens.tolist()) for j in range(-(-n // 128))}
    assert sorted(int(p) for p in torch.nonzero(slots >= 0).flatten()) == sorted(read)
    assert sorted(slots[slots >= 0].tolist()) == list(range(len(read)))  # compact, in physical page order
    assert bool((slots[slots >= 0].diff() > 0).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_widen_fp8_pages(dtype):
    """Each read page lands in its slot: K exact, V x v_scale rounded once; the renumbered table points at it."""
    from kernels.msa.widen import widen_fp8_pages

    case, table = _shared_page_case()
    kv8, _, v_scale = quantize_kv_fp8(case.kv_cache)
    wide, wide_table = widen_fp8_pages(kv8, table, case.seq_lens, v_scale, dtype)
    assert wide.dtype == dtype and wide_table.dtype == table.dtype and wide_table.shape == table.shape
    d = HEAD_DIM
    for r, n in enumerate(case.seq_lens.tolist()):
        for j in range(-(-n // 128)):
            src, dst = kv8[int(table[r, j])], wide[int(wide_table[r, j])]
            assert torch.equal(dst[..., :d], src[..., :d].to(dtype))
            want = (src[..., d:].float() * v_scale).to(dtype)
            if GPU or dtype == torch.float32:
                assert torch.equal(dst[..., d:], want)
            else:  # the interpreter's fp32 -> bf16 cast truncates where the GPU rounds to nearest: 1 ulp apart
                torch.testing.assert_close(dst[..., d:], want, rtol=2 ** -7, atol=0)


@pytest.mark.parametrize("max_union", [0, 63])  # KV-outer only; adaptive
def test_fp8_prefill_widened(max_union):
    """The call on widened pages (forced here; on an sm_90 GPU the default) against the exact reference, with
    shared pages and a padded block table."""
    case, table = _shared_page_case()
    sel = local_selection(case.query_start_loc.cpu(), case.seq_lens.cpu(), 2, 0.8, window=8, seed=5)
    kv8, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
    out = sparse_attention_triton(case.q, kv8, sel.to(DEVICE), table, case.query_start_loc, case.seq_lens,
                                  max_union=max_union, union_tile=8 if GPU else 2, min_share=2, min_shared_pct=0,
                                  k_scale=k_scale, v_scale=v_scale, widen_fp8=True)
    args = (sel, table.cpu(), case.query_start_loc.cpu(), case.seq_lens.cpu())
    exact = sparse_attention(case.q.cpu(), dequantize_kv_fp8(kv8, k_scale, v_scale).cpu(), *args)
    assert rel_err(out, exact) < TOL
    unwidened = sparse_attention_triton(case.q, kv8, sel.to(DEVICE), table, case.query_start_loc, case.seq_lens,
                                        max_union=max_union, union_tile=8 if GPU else 2, min_share=2,
                                        min_shared_pct=0, k_scale=k_scale, v_scale=v_scale, widen_fp8=False)
    assert rel_err(out, unwidened) < TOL


def test_widen_policy(fresh_policy, monkeypatch):
    """Auto widens an fp8 cache only when a CUDA kernel would take its bf16 form (the KV-outer one, or v18r the
    tile-outer one alone); never a bf16 cache, never when both steps are forced onto Triton, always when asked or
    when a step is forced onto CUDA."""
    from kernels.msa import cuda
    from kernels.msa.prefill import _widens

    q = torch.zeros(4, 16, 128, dtype=torch.bfloat16)
    kv8 = torch.zeros(3, 1, 128, 256, dtype=torch.float8_e4m3fn)
    auto = ("auto", "auto")

    def widens(widen, kv, impls):  # noqa: ANN001, ANN202
        return _widens(widen, q, kv, None, impls, 16, 8)

    assert not widens(None, kv8, auto)  # CPU: the CUDA kernels cannot run
    seen = []
    monkeypatch.setattr(cuda, "choose_kv", lambda q_, kv, pd: seen.append((kv.dtype, kv.device.type)))
    assert widens(None, kv8, auto) and seen == [(torch.bfloat16, "meta")]
    assert not widens(None, kv8, ("triton", "triton"))
    assert widens(None, kv8, ("triton", "auto"))
    assert not widens(None, kv8.view(torch.uint8).to(torch.bfloat16), auto)
    assert not widens(False, kv8, auto)
    assert widens(True, kv8, ("triton", "triton"))
    assert widens(None, kv8, ("cuda", "triton"))  # a forced CUDA step reads bf16 pages
    # v18r: the KV-outer kernel refuses (M3 at TP 8), the tile-outer one would take the widened cache
    monkeypatch.setattr(cuda, "choose_kv", lambda q_, kv, pd: "8 query heads per KV head")
    monkeypatch.setattr(cuda, "choose", lambda q_, kv, parts, tile_t: seen.append((parts.shape, tile_t)))
    assert widens(None, kv8, auto) and seen[-1] == ((1, 1, 16, 16, 128), 8)
    assert not widens(None, kv8, ("triton", "auto"))


def test_cuda_step_refuses_an_unwidened_fp8_cache():
    """The CUDA tile-outer step reads bf16 pages or the FP8 step's transposed ones, which an fp8 cache in vLLM's
    layout has the dtype of: forced onto it with widening off, the call is refused (v18r: it once ran the FP8 kernel
    on the raw cache)."""
    case = make_case([300], [300], 16, 1, HEAD_DIM, DTYPE, DEVICE, seed=81)
    kv8, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
    sel = local_selection(case.query_start_loc, case.seq_lens, 1, 1.0, seed=82).to(DEVICE)
    with pytest.raises(ValueError, match="leave widen_fp8 on"):
        sparse_attention_triton(case.q, kv8, sel, case.block_table, case.query_start_loc, case.seq_lens,
                                k_scale=k_scale, v_scale=v_scale, widen_fp8=False, tile_impl="cuda")


def test_widen_bound_sizes_the_copy():
    """``max_read_pages`` (vLLM's total_kv_blocks) sizes the compact cache: the exact count gives the same pages;
    a bound that is too small leaves pages unwritten but never writes past the buffer."""
    from kernels.msa.widen import page_slots, widen_fp8_pages

    case, table = _shared_page_case()
    kv8, _, v_scale = quantize_kv_fp8(case.kv_cache)
    read = int((page_slots(table, case.seq_lens, kv8.shape[0]) >= 0).sum())
    full, full_table = widen_fp8_pages(kv8, table, case.seq_lens, v_scale, torch.float32)
    tight, tight_table = widen_fp8_pages(kv8, table, case.seq_lens, v_scale, torch.float32, max_read_pages=read)
    assert tight.shape[0] == read < full.shape[0]
    assert torch.equal(tight_table, full_table) and torch.equal(tight, full[:read])
    small, _ = widen_fp8_pages(kv8, table, case.seq_lens, v_scale, torch.float32, max_read_pages=2)
    assert small.shape[0] == 2 and torch.equal(small, full[:2])
