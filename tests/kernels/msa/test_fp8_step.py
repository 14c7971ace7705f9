"""The FP8 tile-outer step (v18): the transposed e4m3 pages the widening writes for it, the register-level argument
that lets the S accumulator be P's A fragment as it lies (the key order of V^T's pages), and on a GPU the step
itself against the fp32 reference on the dequantised cache and against the widened bf16 path.

CPU parts under TRITON_INTERPRET=1; the step needs an sm_90 GPU and the CUDA toolchain (skipped elsewhere)."""
from __future__ import annotations

import dataclasses
import os

import torch

if not torch.cuda.is_available():  # must be set before the kernels' @triton.jit run
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

from kernels.msa.inputs import local_selection, make_case, quantize_kv_fp8  # noqa: E402
from kernels.msa.widen import fp8_key_order, widen_and_transpose, widen_fp8_pages  # noqa: E402
from tests.kernels.msa.checks import (  # noqa: E402
    DEVICE,
    DTYPE,
    GPU,
    HEAD_DIM,
    dequantised_tail_reference,
    kind_selection,
    rel_err,
)


def _accumulator_coords(lane: int, warp: int, n: int) -> list[tuple[int, int]]:
    """(row, col) of each fp32 value a thread holds in an m64nN wgmma accumulator (PTX ISA, wgmma D fragment)."""
    g, t = lane // 4, lane % 4
    return [(16 * warp + g + 8 * ((i // 2) % 2), 8 * (i // 4) + 2 * t + i % 2) for i in range(n // 2)]


def _fp8_a_coords(lane: int, warp: int) -> list[tuple[int, int]]:
    """(row, k) of each byte a thread holds in an m64nNk32 8-bit A fragment (PTX ISA, wgmma A for .e4m3)."""
    g, t = lane // 4, lane % 4
    return [(16 * warp + g + 8 * ((i // 4) % 2), 4 * t + i % 4 + 16 * (i // 8)) for i in range(16)]


TO_FP8_PACKING = [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]
"""The accumulator index (within a 32-key group's 16) that to_fp8 (tile_outer_sm90.cu) puts in each A byte."""


def test_key_order_makes_the_accumulator_the_a_fragment():
    """Emulates the 128 threads: each packs its S accumulator bytes as to_fp8 does; the A matrix that wgmma then
    reads, times V^T stored in fp8_key_order, equals P V. A wrong key order or packing breaks the equality."""
    gen = torch.Generator().manual_seed(5)
    p = torch.rand(64, 128, generator=gen, dtype=torch.float64)
    v = torch.randn(128, 16, generator=gen, dtype=torch.float64)
    a = torch.full((64, 128), float("nan"), dtype=torch.float64)
    for warp in range(4):
        for lane in range(32):
            acc = _accumulator_coords(lane, warp, 128)
            for kb in range(4):
                for byte, (row, k) in enumerate(_fp8_a_coords(lane, warp)):
                    src_row, src_col = acc[16 * kb + TO_FP8_PACKING[byte]]
                    assert src_row == row, "to_fp8 must not move a value to another row"
                    a[row, 32 * kb + k] = p[src_row, src_col]
    assert not torch.isnan(a).any()
    order = fp8_key_order(128)
    v_stored = v[torch.cat([32 * kb + order[:32] for kb in range(4)])]  # row k of V^T's page = key order[k]
    torch.testing.assert_close(a @ v_stored, p @ v)
    assert sorted(order.tolist()) == list(range(128)) and torch.equal(order[32:64], order[:32] + 32)


def test_transposed_pages_hold_k_and_permuted_v_t():
    case = make_case([700, 300], [700, 40], num_heads=16, num_kv_heads=2, head_dim=128, dtype=DTYPE,
                     device=DEVICE, seed=51)
    kv8, _, v_scale = quantize_kv_fp8(case.kv_cache)
    widened, pages, table = widen_and_transpose(kv8, case.block_table, case.seq_lens, v_scale, torch.float32)
    want_widened, want_table = widen_fp8_pages(kv8, case.block_table, case.seq_lens, v_scale, torch.float32)
    read = torch.unique(table[table >= 0])  # pages past those the call reads are never written (empty memory)
    assert torch.equal(table, want_table) and torch.equal(widened[read], want_widened[read])
    assert pages is not None and pages.dtype == torch.float8_e4m3fn and pages.shape[1:] == kv8.shape[1:]
    order = fp8_key_order(128).to(DEVICE)
    d = kv8.shape[-1] // 2
    for req, n in enumerate(case.seq_lens.tolist()):
        for j in range(-(-n // 128)):
            src, dst = kv8[case.block_table[req, j]].view(torch.uint8), pages[table[req, j]].view(torch.uint8)
            assert torch.equal(dst[:, :, :d], src[:, :, :d])  # K as it is
            assert torch.equal(dst[:, :d, d:], src[:, order, d:].transpose(1, 2))  # V^T, keys in fp8_key_order


needs_step = pytest.mark.skipif(not GPU or torch.cuda.get_device_capability() != (9, 0),
                                reason="needs an sm_90 GPU (the CUDA library: built here, or prebuilt and found through "
                                       "M3LAB_MSA_CUDA_CACHE)")
STEP_TOL = 6e-2
"""Bound on the FP8 step's error against the fp32 reference on the dequantised cache and against the widened path:
Q per row and P in e4m3 give ~2.5e-2 each, 3.6e-2 together (fp64 emulation on make_case's data; H200 at 128K:
3.4-3.6e-2, NOTES v18). A layout error (wrong key order, packing or scale) gives O(1)."""


@pytest.fixture(scope="module")
def m3_case():
    return make_case([8192 + 4096, 5000], [8192, 5000], 64, 4, 128, torch.bfloat16, "cuda", seed=52)


@pytest.mark.gpu
@needs_step
@pytest.mark.parametrize("kind,partials", [("indexer", None), ("0.9", None), ("1.0", None), ("0.9", torch.int8)])
def test_m3_fp8_step(m3_case, kind, partials):
    """M3 shapes, a chunked request (4K of context before its 8K queries) and a whole one; every row compared with
    the widened bf16 path on the same fp8 cache, the last tokens with the fp32 reference."""
    from kernels.msa import cuda
    from kernels.msa.prefill import sparse_attention_triton

    case = m3_case
    sel = kind_selection(case, kind, 53, 8192)
    kv8, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
    case8 = dataclasses.replace(case, kv_cache=kv8)
    args = (sel, case8.block_table, case8.query_start_loc, case8.seq_lens)
    knobs = {"k_scale": k_scale, "v_scale": v_scale, "partial_dtype": partials, "tile_impl": "cuda"}
    widened = sparse_attention_triton(case8.q, kv8, *args, **knobs)
    for variant in (v for v in cuda.FP8_VARIANTS if v in cuda.group_variants(16)):
        with cuda.variant_as_default(16, True, variant):
            out = sparse_attention_triton(case8.q, kv8, *args, fp8_step=True, **knobs)
        tail = 32
        ref = dequantised_tail_reference(case, kv8, k_scale, v_scale, sel, tail)
        err, diff = rel_err(out[-tail:], ref), rel_err(out, widened.float())
        print(f"FP8 step v{variant} {kind} {partials}: err vs dequantised ref {err:.2e}, vs widened {diff:.2e}")
        assert torch.isfinite(out).all()
        assert err < STEP_TOL and diff < STEP_TOL, (variant, err, diff)


def test_fp8_step_needs_an_fp8_cache():
    case = make_case([300], [300], num_heads=16, num_kv_heads=1, head_dim=HEAD_DIM, dtype=DTYPE, device=DEVICE, seed=54)
    sel = local_selection(case.query_start_loc, case.seq_lens, 1, 0.9, seed=1).to(DEVICE)
    from kernels.msa.prefill import sparse_attention_triton

    with pytest.raises(ValueError, match="fp8_step"):
        sparse_attention_triton(case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens,
                                fp8_step=True)


@pytest.mark.parametrize("knobs", [{"fp8_q_terms": 2}, {"fp8_q_terms": 3, "fp8_step": True}])
def test_two_term_q_needs_the_fp8_step(knobs):
    case = make_case([300], [300], num_heads=16, num_kv_heads=1, head_dim=HEAD_DIM, dtype=DTYPE, device=DEVICE, seed=54)
    sel = local_selection(case.query_start_loc, case.seq_lens, 1, 0.9, seed=1).to(DEVICE)
    kv8, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
    from kernels.msa.prefill import sparse_attention_triton

    with pytest.raises(ValueError, match="fp8_q_terms"):
        sparse_attention_triton(case.q, kv8, sel, case.block_table, case.query_start_loc, case.seq_lens,
                                k_scale=k_scale, v_scale=v_scale, **knobs)


def test_transposed_pages_need_head_dim_128():
    case = make_case([300], [30], num_heads=16, num_kv_heads=1, head_dim=32, dtype=DTYPE, device=DEVICE, seed=55)
    kv8, _, v_scale = quantize_kv_fp8(case.kv_cache)
    with pytest.raises(ValueError, match="head_dim == 128"):
        widen_and_transpose(kv8, case.block_table, case.seq_lens, v_scale)


@pytest.mark.gpu
@needs_step
@pytest.mark.parametrize("q_terms", [1, 2])
def test_fp8_step_replays_from_a_cuda_graph(q_terms):
    """The FP8 step's path (widening + transposed pages, the split, the steps, the merge) has no host sync: captured
    into a CUDA graph and replayed on new inputs it gives the eager result."""
    from kernels.msa.prefill import sparse_attention_triton

    case = make_case([1500], [1500], 64, 4, 128, torch.bfloat16, "cuda", seed=56)
    kv8, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
    sel = local_selection(case.query_start_loc, case.seq_lens, 4, 0.9, seed=57)
    args = (case.q, kv8, sel, case.block_table, case.query_start_loc, case.seq_lens)
    knobs = {"k_scale": k_scale, "v_scale": v_scale, "fp8_step": True, "fp8_q_terms": q_terms}
    out = torch.empty_like(case.q)
    sparse_attention_triton(*args, out=out, **knobs)  # warm-up: compiles, loads the library
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        sparse_attention_triton(*args, out=out, **knobs)
    case.q.copy_(torch.randn_like(case.q))  # new inputs in the captured buffers
    sel.copy_(local_selection(case.query_start_loc, case.seq_lens, 4, 1.0, seed=58))
    graph.replay()
    torch.cuda.synchronize()
    want = sparse_attention_triton(*args, **knobs)
    assert rel_err(out, want.float()) < 1e-3  # the same kernels on the same inputs (new q: a stale replay is O(1))


def test_fp8_step_without_tile_outer_writes_no_transposed_pages(monkeypatch):
    """max_union=0 runs KV-outer only: fp8_step then has no step to feed, so no transposed pages are written (on the
    CPU they could not be: head_dim 32) and the output is the widened KV-outer path's."""
    from kernels.msa import prefill
    from kernels.msa.prefill import sparse_attention_triton

    calls = []
    real = prefill.widen_pages
    monkeypatch.setattr(prefill, "widen_pages", lambda *a, **kw: calls.append(kw["transposed"]) or real(*a, **kw))
    case = make_case([300], [300], num_heads=16, num_kv_heads=1, head_dim=HEAD_DIM, dtype=DTYPE, device=DEVICE, seed=59)
    sel = local_selection(case.query_start_loc, case.seq_lens, 1, 0.9, seed=2).to(DEVICE)
    kv8, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
    args = (case.q, kv8, sel, case.block_table, case.query_start_loc, case.seq_lens)
    knobs = {"k_scale": k_scale, "v_scale": v_scale, "max_union": 0, "widen_fp8": True}
    out = sparse_attention_triton(*args, fp8_step=True, **knobs)
    want = sparse_attention_triton(*args, **knobs)
    assert calls == [False, False] and torch.equal(out, want)


def _split_of(case, sel):  # noqa: ANN001, ANN202
    from kernels.msa.merge import device_positions, device_requests
    from kernels.msa.tile_outer import tile_unions

    n = case.q.shape[0]
    return tile_unions(sel, device_requests(case.query_start_loc, n),
                       device_positions(case.query_start_loc, case.seq_lens, n), case.block_table)


def test_tile_read_flags_mark_exactly_the_pages_tiles_read():
    """v18p: the flags are the (page, KV head) pairs of every union entry of a tile with tile-outer work; a tile left
    to KV-outer (union larger than max_union) marks nothing; bounds are respected."""
    from kernels.msa.widen import tile_read_flags

    case = make_case([900, 400], [900, 400], num_heads=16, num_kv_heads=2, head_dim=HEAD_DIM, dtype=DTYPE,
                     device=DEVICE, seed=60)
    sel = local_selection(case.query_start_loc, case.seq_lens, 2, 0.5, top_k=4, seed=61).to(DEVICE)
    split = _split_of(case, sel)
    capacity = int(case.block_table.max()) + 1
    flags = tile_read_flags(split.pages, split.union_size, capacity).cpu()
    want = torch.zeros(capacity, 2, dtype=torch.int8)
    pages, sizes = split.pages.cpu(), split.union_size.cpu()
    max_union = pages.shape[2]
    for h in range(2):
        for t in range(pages.shape[1]):
            n = int(sizes[h, t])
            if n <= max_union:
                want[pages[h, t, :n].long(), h] = 1
    assert want.any() and not want.all()  # some pairs read, some not: the test can tell
    assert torch.equal(flags, want)
    small = tile_read_flags(split.pages, split.union_size, 2).cpu()  # a bound too small: flags inside it only
    assert torch.equal(small, want[:2])


def test_transposed_pages_only_where_flagged():
    """widen_pages with read flags: flagged (page, KV head) pairs hold K and V^T exactly as without flags, unflagged
    ones are not written (their poison stays); the bf16 copy is complete either way."""
    from kernels.msa.widen import compact_pages, transposed_buffer, widen_pages
    from kernels.msa.workspace import PrefillWorkspace

    case = make_case([700, 300], [700, 40], num_heads=16, num_kv_heads=2, head_dim=128, dtype=DTYPE,
                     device=DEVICE, seed=62)
    kv8, _, v_scale = quantize_kv_fp8(case.kv_cache)
    pages = compact_pages(case.block_table, case.seq_lens, kv8.shape[0])
    full_w, full_t = widen_pages(kv8, pages, v_scale, torch.float32, transposed=True)
    read = torch.zeros(pages.capacity, 2, dtype=torch.int8, device=DEVICE)
    read[::2, 0] = 1
    read[1::3, 1] = 1
    ws = PrefillWorkspace()
    poison = transposed_buffer(ws, pages.capacity, 2, 128, kv8.device)
    poison.view(torch.uint8).fill_(0x7F)
    part_w, part_t = widen_pages(kv8, pages, v_scale, torch.float32, ws, transposed=True, read=read)
    used = torch.unique(pages.table[pages.table >= 0]).cpu()  # pages past these are never written (empty memory)
    assert part_t is not None and full_t is not None and torch.equal(part_w[used], full_w[used])
    got, want = part_t.view(torch.uint8).cpu(), full_t.view(torch.uint8).cpu()
    flags = read.cpu()
    for page in used.tolist():
        for h in range(2):
            if flags[page, h]:
                assert torch.equal(got[page, h], want[page, h])
            else:
                assert bool((got[page, h] == 0x7F).all())
    with pytest.raises(ValueError, match="read flags must be"):
        widen_pages(kv8, pages, v_scale, torch.float32, transposed=True, read=read[:1])
