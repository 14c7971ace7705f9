"""Triton MSA prefill attention: locality-adaptive (v7) over a KV-outer ("gather Q") core.

``sparse_attention_triton`` first splits the selection with ``tile_outer.tile_unions``: blocks shared by most of a
query tile's tokens run tile-outer (tile_outer.py, no partials), the rest runs KV-outer as described below, and the
merge combines both per token. ``max_union=0`` runs KV-outer alone (v6).

Query-outer kernels reload every selected K/V block once per query token. Here the selection is inverted into a
CSR (for each (KV head, request, block): the (token, slot) entries that chose it); a program loads the K/V of one
block once and streams gathered query tiles through it (TILE_T tokens x 16 heads = 64 rows per MMA by default: 4 warps,
~2 programs per SM, 1.5x faster on H100 than 128 rows x 8 warps, NOTES.md v5), writing a
normalised partial output and its log2-sum-exp per (token, slot). ``merge.merge_partials`` combines the <= 16
parts of each token. Balance: a block's entry list is cut into chunks of CHUNK entries, one program each, so a
very popular block (the first blocks, chosen by most tokens) spreads over many programs.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.msa.merge import LOG2E, CarrierParts, device_positions, device_requests, merge_partials, store_part
from kernels.msa.reference import BLOCK_SIZE, MSAShapeError
from kernels.msa.tile_outer import (
    DEFAULT_MAX_UNION,
    DEFAULT_MIN_SHARED_PCT,
    TileSplit,
    min_share_for,
    tile_outer_attention,
    tile_tokens,
    tile_unions,
)
from kernels.msa.widen import FP8_CACHE_DTYPE, compact_pages, tile_read_flags, widen_pages
from kernels.msa.workspace import PartialBuffers, PrefillWorkspace, empty, partial_buffers


@triton.jit
def _kv_outer_kernel(
    q_ptr, kv_ptr, perm_ptr, row_ptr, work_seg_ptr, work_chunk_ptr, bt_ptr, seq_lens_ptr, pos_ptr,
    po_ptr, plse_ptr, ps_ptr,
    num_tokens, num_segs, blocks_per_head, max_blocks, num_kv_heads, sm_scale_log2, v_scale,
    stride_qt, stride_qh,
    stride_kvp, stride_kvh, stride_kvt,
    stride_btr,
    GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, HEAD_DIM: tl.constexpr, TOPK: tl.constexpr,
    TILE_T: tl.constexpr, CHUNK: tl.constexpr, PREFETCH: tl.constexpr, RELOAD_KV: tl.constexpr,
    BLOCK: tl.constexpr, SCALE_V: tl.constexpr,
):
    w = tl.program_id(0)
    seg = tl.load(work_seg_ptr + w)
    if seg >= num_segs:
        return
    start = tl.load(row_ptr + seg) + tl.load(work_chunk_ptr + w) * CHUNK
    end = tl.minimum(start + CHUNK, tl.load(row_ptr + seg + 1))
    h = (seg // blocks_per_head) % num_kv_heads  # seg = ((window * Hkv + h) * requests + req) * max_blocks + blk
    req = (seg % blocks_per_head) // max_blocks
    blk = seg % max_blocks
    page = tl.load(bt_ptr + req.to(tl.int64) * stride_btr + blk).to(tl.int64)
    seq_len = tl.load(seq_lens_ptr + req)

    offs_j = tl.arange(0, BLOCK)
    offs_d = tl.arange(0, HEAD_DIM)
    kpos = blk * BLOCK + offs_j
    kv_ok = kpos < seq_len
    kv_base = kv_ptr + page * stride_kvp + h * stride_kvh
    # K and V of the block: read from memory once per program, reused by every query tile below. With
    # RELOAD_KV the tiles re-read them (L1/L2 hits) instead of keeping 128 registers per thread live across
    # the loop, which limits the SM to one program (ncu: 255 registers, 12.5% occupancy).
    # An fp8 cache is widened to q's dtype (exact); its K scale is folded into sm_scale_log2, V's applied to o.
    k_t = tl.load(kv_base + offs_j[None, :] * stride_kvt + offs_d[:, None], mask=kv_ok[None, :],
                  other=0.0).to(q_ptr.dtype.element_ty)
    v = tl.load(kv_base + offs_j[:, None] * stride_kvt + HEAD_DIM + offs_d[None, :], mask=kv_ok[:, None],
                other=0.0).to(q_ptr.dtype.element_ty)

    ROWS: tl.constexpr = TILE_T * GROUP_PAD
    offs_r = tl.arange(0, ROWS)
    r_tok = offs_r // GROUP_PAD
    r_g = offs_r % GROUP_PAD
    ent_ok, e, q, p_t = _gather_tile(q_ptr, perm_ptr, pos_ptr, start, end, r_tok, r_g, offs_d, h, num_tokens,
                                     stride_qt, stride_qh, GROUP, TOPK)
    for i in range(start, end, TILE_T):
        if PREFETCH:  # issue the next tile's gathers before this tile's MMAs, so their latency overlaps
            nxt = _gather_tile(q_ptr, perm_ptr, pos_ptr, i + TILE_T, end, r_tok, r_g, offs_d, h, num_tokens,
                               stride_qt, stride_qh, GROUP, TOPK)
        else:
            nxt = _gather_tile(q_ptr, perm_ptr, pos_ptr, i, end, r_tok, r_g, offs_d, h, num_tokens,
                               stride_qt, stride_qh, GROUP, TOPK)
            ent_ok, e, q, p_t = nxt
        if RELOAD_KV:
            k_t = tl.load(kv_base + offs_j[None, :] * stride_kvt + offs_d[:, None], mask=kv_ok[None, :],
                          other=0.0).to(q_ptr.dtype.element_ty)
            v = tl.load(kv_base + offs_j[:, None] * stride_kvt + HEAD_DIM + offs_d[None, :], mask=kv_ok[:, None],
                        other=0.0).to(q_ptr.dtype.element_ty)
        s = tl.dot(q, k_t) * sm_scale_log2
        s = tl.where((kpos[None, :] <= p_t[:, None]) & kv_ok[None, :], s, float("-inf"))
        m = tl.max(s, axis=1)
        m = tl.where(m == float("-inf"), 0.0, m)  # a row with no visible key (bad selection) stays finite
        p = tl.exp2(s - m[:, None])
        l = tl.sum(p, axis=1)
        o = tl.dot(p.to(v.dtype), v) / tl.where(l > 0, l, 1.0)[:, None]
        if SCALE_V:
            o = o * v_scale
        lse = tl.where(l > 0, m + tl.log2(l), float("-inf"))
        part = e * GROUP + r_g
        store_part(po_ptr, ps_ptr, part, offs_d, o, ent_ok, HEAD_DIM)
        tl.store(plse_ptr + part, lse, mask=ent_ok)
        ent_ok, e, q, p_t = nxt


@triton.jit
def _gather_tile(q_ptr, perm_ptr, pos_ptr, i, end, r_tok, r_g, offs_d, h, num_tokens, stride_qt, stride_qh,
                 GROUP: tl.constexpr, TOPK: tl.constexpr):
    """Entries i .. i + TILE_T of the block's list: (row mask, entry ids, gathered Q rows, token positions)."""
    ent_ok = (i + r_tok < end) & (r_g < GROUP)
    e = tl.load(perm_ptr + i + r_tok, mask=ent_ok, other=0).to(tl.int64)  # e = (h * T + t) * TOPK + slot
    t = (e // TOPK) % num_tokens
    q = tl.load(q_ptr + t[:, None] * stride_qt + (h * GROUP + r_g)[:, None] * stride_qh + offs_d[None, :],
                mask=ent_ok[:, None], other=0.0)
    p_t = tl.load(pos_ptr + t, mask=ent_ok, other=0)
    return ent_ok, e, q, p_t


def build_block_csr(
    selection: torch.Tensor, query_start_loc: torch.Tensor, max_blocks: int, chunk: int, window: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Invert the selection: (perm, row_ptr, work_seg, work_chunk, num_segs), no host sync.

    Segment id = ((token_window * kv_heads + kv_head) * num_requests + request) * max_blocks + block, where
    token_window = token // window (one window when window == 0). Windows make the work window-major, so the
    programs running at one time gather queries from one window of tokens (which the L2 can hold) instead of
    from the whole sequence; the price is one more K/V load per (block, window). ``perm`` lists selection entries
    (flat index into [kv_heads, tokens, top_k]) grouped by segment; ``row_ptr`` [num_segs + 1] are the offsets.
    Work item w handles entries [row_ptr[seg] + work_chunk[w] * chunk, ... + chunk) of seg = work_seg[w];
    items past the real count carry seg == num_segs.
    """
    num_kv_heads, num_tokens, top_k = selection.shape
    num_requests = query_start_loc.numel() - 1
    window = window or num_tokens
    num_windows = triton.cdiv(num_tokens, window)
    num_segs = num_windows * num_kv_heads * num_requests * max_blocks
    dev = selection.device
    req = device_requests(query_start_loc, num_tokens)
    win = torch.arange(num_tokens, device=dev) // window
    head = torch.arange(num_kv_heads, device=dev)[:, None, None]
    sel = selection.to(torch.int64)
    seg = (((win[None, :, None] * num_kv_heads + head) * num_requests + req[None, :, None]) * max_blocks + sel)
    seg = torch.where(sel >= 0, seg, num_segs).flatten()
    # 32-bit keys halve the radix sort's passes; stable: entries of a block stay in token order
    key_dtype = torch.int32 if num_segs < 2 ** 31 else torch.int64
    sorted_seg, perm = torch.sort(seg.to(key_dtype), stable=True)
    perm = perm.to(torch.int32)
    # Segment offsets from the sorted keys: a bincount would pile every -1 entry onto one atomic counter (3.1 ms
    # at 128K when tile-outer took every entry, NOTES v8).
    row_ptr = torch.searchsorted(sorted_seg, torch.arange(num_segs + 1, device=dev, dtype=key_dtype))
    return (perm, row_ptr, *_work_items(row_ptr, chunk, seg.numel()), num_segs)


def _work_items(row_ptr: torch.Tensor, chunk: int, num_entries: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(work_seg, work_chunk) int32: one work item per ``chunk`` entries of each segment, padded to a host-known
    bound (sum(ceil(c / chunk)) <= segments + entries / chunk) with seg == num_segs. The same two kernels as
    ``csr_from_split`` (prefix sums, then the work items), without its scatter."""
    num_segs = row_ptr.numel() - 1
    num_work = num_segs + triton.cdiv(num_entries, chunk)
    dev = row_ptr.device
    counts = (row_ptr[1:] - row_ptr[:-1]).to(torch.int32)
    offsets = torch.empty(num_segs + 1, dtype=torch.int64, device=dev)  # row_ptr again: the kernel writes both sums
    work_end = torch.empty(num_segs, dtype=torch.int32, device=dev)
    work_seg = torch.empty(num_work, dtype=torch.int32, device=dev)
    work_chunk = torch.empty(num_work, dtype=torch.int32, device=dev)
    _csr_offsets_kernel[(1,)](counts, offsets, work_end, offsets, num_segs, CHUNK=chunk, BLOCK_S=4096, LANES=1,
                              num_warps=8)
    _work_items_kernel[(triton.cdiv(num_work, WORK_BLOCK),)](work_end, work_seg, work_chunk, num_segs, num_work,
                                                             num_segs.bit_length(), BLOCK=WORK_BLOCK)
    return work_seg, work_chunk


@triton.jit
def _csr_offsets_kernel(count_ptr, row_ptr, work_end_ptr, lane_start_ptr, num_segs, CHUNK: tl.constexpr,
                        BLOCK_S: tl.constexpr, LANES: tl.constexpr):
    """One program: ``row_ptr`` = [0, cumsum(counts)] (int64) and ``work_end`` = cumsum(ceil(count / CHUNK)), the
    prefix sums of the CSR and its work items (v13s: two launches for the whole CSR instead of ~15). v14u: with
    LANES > 1 the counts are [LANES, num_segs] (lane-major); a segment's count is their sum and ``lane_start``
    [num_segs, LANES] gets each lane's first slot inside its segment (exclusive prefix over the lanes)."""
    offs = tl.arange(0, BLOCK_S)
    carry = tl.zeros((), tl.int64)
    carry_w = tl.zeros((), tl.int32)
    tl.store(row_ptr, carry)
    for s0 in range(0, num_segs, BLOCK_S):
        ok = s0 + offs < num_segs
        if LANES == 1:
            c = tl.load(count_ptr + s0 + offs, mask=ok, other=0)
        else:
            lanes = tl.arange(0, LANES)
            c2 = tl.load(count_ptr + lanes[None, :] * num_segs + (s0 + offs)[:, None], mask=ok[:, None], other=0)
            c = tl.sum(c2, 1)
            tl.store(lane_start_ptr + (s0 + offs)[:, None] * LANES + lanes[None, :], tl.cumsum(c2, 1) - c2,
                     mask=ok[:, None])
        ends = carry + tl.cumsum(c.to(tl.int64), 0)
        tl.store(row_ptr + 1 + s0 + offs, ends, mask=ok)
        chunks = (c + CHUNK - 1) // CHUNK
        work_ends = carry_w + tl.cumsum(chunks, 0)
        tl.store(work_end_ptr + s0 + offs, work_ends, mask=ok)
        carry = tl.max(ends, 0)  # counts are >= 0: the last prefix sum is the largest
        carry_w = tl.max(work_ends, 0)


@triton.jit
def _csr_fill_kernel(rest_ptr, seg_pos_ptr, req_ptr, row_ptr, lane_start_ptr, perm_ptr, work_end_ptr, work_seg_ptr,
                     work_chunk_ptr, num_entries, num_tokens, num_requests, max_blocks, num_segs, num_work,
                     search_steps, scatter_programs, TOPK: tl.constexpr, BLOCK_E: tl.constexpr, LANES: tl.constexpr):
    """The first ``scatter_programs`` programs put every KV-outer entry at its segment's offset + its lane's start
    (v14u) + its slot; the others write the work items (``_work_item_block``)."""
    pid = tl.program_id(0)
    if pid < scatter_programs:
        e = pid.to(tl.int64) * BLOCK_E + tl.arange(0, BLOCK_E)  # e = (h * T + t) * TOPK + slot
        ok = e < num_entries
        x = tl.load(rest_ptr + e, mask=ok, other=-1)
        keep = x >= 0
        slot = tl.load(seg_pos_ptr + e, mask=keep, other=0)
        t = (e // TOPK) % num_tokens
        req = tl.load(req_ptr + t, mask=keep, other=0)
        seg = ((e // TOPK) // num_tokens * num_requests + req) * max_blocks + x
        if LANES > 1:
            slot += tl.load(lane_start_ptr + seg * LANES + t % LANES, mask=keep, other=0)
        tl.store(perm_ptr + tl.load(row_ptr + seg, mask=keep, other=0) + slot, e.to(tl.int32), mask=keep)
    else:
        _work_item_block(work_end_ptr, work_seg_ptr, work_chunk_ptr, pid - scatter_programs, num_segs, num_work,
                         search_steps, BLOCK_E)


WORK_BLOCK = 1024
"""Work items per program of ``_work_items_kernel``."""


@triton.jit
def _work_item_block(work_end_ptr, work_seg_ptr, work_chunk_ptr, b, num_segs, num_work, search_steps,
                     BLOCK: tl.constexpr):
    """Work items [b * BLOCK, (b + 1) * BLOCK): seg = ``searchsorted(work_end, w, right=True)`` by a binary search
    (the tail past the last item points at ``num_segs``), chunk = w - the segment's first item."""
    w = b * BLOCK + tl.arange(0, BLOCK)
    ok = w < num_work
    lo = tl.zeros((BLOCK,), tl.int32)  # number of work_end values <= w, searched in [lo, hi]
    hi = tl.full((BLOCK,), num_segs, tl.int32)
    for _ in range(search_steps):
        mid = (lo + hi) // 2
        open_ = lo < hi
        right = open_ & (tl.load(work_end_ptr + mid, mask=open_, other=0) <= w)
        lo = tl.where(right, mid + 1, lo)
        hi = tl.where(open_ & ~right, mid, hi)
    last = tl.minimum(lo, num_segs - 1)
    start = tl.load(work_end_ptr + last - 1, mask=ok & (last > 0), other=0)
    tl.store(work_seg_ptr + w, lo, mask=ok)
    tl.store(work_chunk_ptr + w, w - start, mask=ok)


@triton.jit
def _work_items_kernel(work_end_ptr, work_seg_ptr, work_chunk_ptr, num_segs, num_work, search_steps,
                       BLOCK: tl.constexpr):
    _work_item_block(work_end_ptr, work_seg_ptr, work_chunk_ptr, tl.program_id(0), num_segs, num_work,
                     search_steps, BLOCK)


def csr_from_split(
    split: TileSplit, requests: torch.Tensor, max_blocks: int, chunk: int, workspace: PrefillWorkspace | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """The CSR of ``build_block_csr(split.rest, ...)`` (same offsets and work items; entries of a segment in the
    order the split kernel's atomics gave them) from the split kernel's counts and slots (``tile_unions`` with
    ``csr_blocks``): prefix sums and one scatter instead of a sort of every entry (v10t), in two launches (v13s).
    ``workspace``: take its arrays from there instead of allocating them (v14u)."""
    if split.seg_count is None or split.seg_pos is None:
        raise ValueError("the split has no CSR counts: call tile_unions with csr_blocks=max_blocks")
    num_kv_heads, num_tokens, top_k = split.rest.shape
    lanes = split.csr_lanes
    num_segs = split.seg_count.numel() // lanes
    num_entries = split.rest.numel()
    num_work = num_segs + triton.cdiv(num_entries, chunk)  # the bound _work_items pads to
    dev = split.rest.device
    row_ptr = empty(workspace, "csr_row_ptr", (num_segs + 1,), torch.int64, dev)
    work_end = empty(workspace, "csr_work_end", (num_segs,), torch.int32, dev)
    perm = empty(workspace, "csr_perm", (num_entries,), torch.int32, dev)
    work_seg = empty(workspace, "csr_work_seg", (num_work,), torch.int32, dev)
    work_chunk = empty(workspace, "csr_work_chunk", (num_work,), torch.int32, dev)
    lane_start = empty(workspace, "csr_lane_start", (num_segs * lanes,), torch.int32, dev) if lanes > 1 else work_end
    _csr_offsets_kernel[(1,)](split.seg_count, row_ptr, work_end, lane_start, num_segs, CHUNK=chunk,
                              BLOCK_S=4096 // lanes, LANES=lanes, num_warps=8)
    block_e = 1024
    scatter_programs = triton.cdiv(num_entries, block_e)
    _csr_fill_kernel[(scatter_programs + triton.cdiv(num_work, block_e),)](
        split.rest, split.seg_pos, requests, row_ptr, lane_start, perm, work_end, work_seg, work_chunk, num_entries,
        num_tokens, num_segs // (num_kv_heads * max_blocks), max_blocks, num_segs, num_work, num_segs.bit_length(),
        scatter_programs, TOPK=top_k, BLOCK_E=block_e, LANES=lanes)
    return perm, row_ptr, work_seg, work_chunk, num_segs


def kv_outer_partials(
    q: torch.Tensor,
    kv_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    csr: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int],
    positions: torch.Tensor,
    top_k: int,
    scale: float,
    chunk: int,
    num_warps: int = 4,
    num_stages: int = 2,
    prefetch: bool = True,
    tile_rows: int = 64,
    reload_kv: bool = False,
    maxnreg: int | None = None,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
    partial_dtype: torch.dtype | None = None,
    out: PartialBuffers | None = None,
) -> PartialBuffers:
    """The attention stage alone: (partial_o [Hkv, T, top_k, G, d] in ``partial_dtype`` (default q's dtype; also
    ``torch.int8``), partial_lse fp32 [Hkv, T, top_k, G], the per-row scales of int8 partials (fp32, same shape;
    None for other dtypes)). ``out``: such buffers to write into (v14u: a ``PrefillWorkspace``'s), else new ones."""
    if partial_dtype not in (None, q.dtype, torch.int8):
        raise ValueError(f"partial_dtype must be q's dtype or torch.int8, got {partial_dtype} (fp8 partials were "
                         "removed in v10t: 2.7e-2 output error at M3 shapes, NOTES.md)")
    num_tokens, num_heads, head_dim = q.shape
    num_kv_heads = kv_cache.shape[1]
    group = num_heads // num_kv_heads
    group_pad = triton.next_power_of_2(group)
    perm, row_ptr, work_seg, work_chunk, num_segs = csr
    max_blocks = block_table.shape[1]
    partial_o, partial_lse, partial_scale = out or partial_buffers(None, num_kv_heads, num_tokens, top_k, group,
                                                                   head_dim, partial_dtype or q.dtype, q.device)
    extra = {"maxnreg": maxnreg} if maxnreg else {}  # register cap: trades spills for programs per SM
    _kv_outer_kernel[(work_seg.numel(),)](
        q, kv_cache, perm, row_ptr, work_seg, work_chunk, block_table, seq_lens, positions,
        partial_o, partial_lse, partial_scale if partial_scale is not None else partial_lse,
        num_tokens, num_segs, block_table.shape[0] * max_blocks, max_blocks, num_kv_heads,
        scale * k_scale * LOG2E, float(v_scale),
        q.stride(0), q.stride(1),
        kv_cache.stride(0), kv_cache.stride(1), kv_cache.stride(2),
        block_table.stride(0),
        GROUP=group, GROUP_PAD=group_pad, HEAD_DIM=head_dim, TOPK=top_k, TILE_T=max(1, tile_rows // group_pad),
        CHUNK=chunk, PREFETCH=prefetch, RELOAD_KV=reload_kv, BLOCK=BLOCK_SIZE, SCALE_V=v_scale != 1.0,
        num_warps=num_warps,
        num_stages=num_stages, **extra,
    )
    return partial_o, partial_lse, partial_scale


def sparse_attention_triton(
    q: torch.Tensor,
    kv_cache: torch.Tensor,
    selection: torch.Tensor,
    block_table: torch.Tensor,
    query_start_loc: torch.Tensor,
    seq_lens: torch.Tensor,
    sm_scale: float | None = None,
    out: torch.Tensor | None = None,
    chunk: int = 128,
    num_warps: int = 4,
    num_stages: int = 2,
    window: int = 0,
    prefetch: bool = True,
    tile_rows: int = 64,
    max_union: int = DEFAULT_MAX_UNION,
    union_tile: int | None = None,
    min_share: int | None = None,
    tile_keys: int = 64,
    tile_stages: int = 2,
    min_shared_pct: int = DEFAULT_MIN_SHARED_PCT,
    tile_warps: int = 4,
    tile_per_sm: int = 0,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
    fuse_merge: bool | None = None,
    partial_dtype: torch.dtype | None = None,
    tile_impl: str = "auto",
    kv_impl: str = "auto",
    workspace: PrefillWorkspace | None = None,
    widen_fp8: bool | None = None,
    max_read_pages: int | None = None,
    fp8_step: bool = False,
    fp8_q_terms: int = 1,
) -> torch.Tensor:
    """Locality-adaptive sparse attention; returns ``out`` [num_tokens, num_heads, head_dim] in q's dtype.

    Per tile of ``union_tile`` tokens and KV head, the blocks chosen by >= ``min_share`` of the tile's tokens (when
    there are at most ``max_union`` of them) run tile-outer (tile_outer.py: all the tile's rows at once, no
    partials); None for both (v18r): ``tile_outer.tile_tokens`` of the group (8 tokens at 16 query heads per KV head,
    16 at 8) and ``tile_outer.min_share_for`` that tile (3 / 6); the other entries run KV-outer (CSR + partials); the merge combines the two per token, and tokens
    with no KV-outer entry skip it. All choices are made on the device, per tile (no host sync, graph-safe).
    The adaptive path is the default (v8): on the H200 it was 1.02-1.10x v6 on selections with little sharing
    and 1.36-1.98x at f >= 0.9 (NOTES.md v8, RESULTS.md); ``max_union=0`` runs KV-outer only (v6).
    ``tile_*`` knobs: the tile-outer kernel's warps, pipeline stages, key piece and programs per SM (0: one per tile).
    ``kv_cache`` may be float8 e4m3 (``torch.float8_e4m3fn``, vLLM's layout) with per-tensor ``k_scale`` /
    ``v_scale``. ``widen_fp8`` (v17): the pages this call reads are widened once into a compact cache of q's dtype
    (``kernels.msa.widen``: K exact with k_scale folded into the softmax scale, V x v_scale rounded once) so the
    CUDA kernels run; None (default): when a step is forced onto CUDA or ``kernels.msa.cuda.choose_kv`` (v18r: or
    ``choose``) would take a bf16 cache here (a forced CUDA step on an unwidened fp8 cache is refused); False: the
    Triton kernels widen after each load (no extra memory; H200 v17: 0.56-0.68x the widened path at 128K).
    ``max_read_pages``: a host-known upper bound on the cache pages the call reads (vLLM's ``total_kv_blocks``); it
    sizes the widened cache, else ``min(cache pages, block-table entries)``.
    ``fp8_step`` (v18, fp8 cache, CUDA step): the tile-outer step runs FP8 wgmma (Q quantised per row on chip, P in
    e4m3) on e4m3 K / V^T pages written by the same widening pass (``widen_and_transpose``); the KV-outer stage
    keeps the bf16 widened pages. Raises ValueError when the CUDA step cannot run. ``fp8_q_terms`` (v18z, with
    ``fp8_step``): 2 carries each Q row as two e4m3 terms at one scale (its rounding and the residual's), so S is two
    FP8 products and Q is exact to ~2^-8 as in bf16: on peaked attention the step's error falls from 6.9e-2 to
    P's rounding (NOTES v18z), for twice the S product's tensor work.
    ``fuse_merge`` (v9): the tile-outer kernel folds its rows' KV-outer parts in on chip and
    writes them (no carrier part, no merge pass over those rows); on the H200 it was 0.88-0.98x the v8 path on
    selections with locality and 1.03x on a chunked row, so v8's separate merge stays the default (NOTES v9); with
    ``tile_impl="cuda"`` (no spills there) it pays: 128K f = 0.9 24.3 ms vs 32.5 (NOTES v10).
    ``partial_dtype``: dtype of the KV-outer partial outputs (None: ``default_partial_dtype``, q's dtype except
    with ``fp8_step`` at 8 query heads per KV head, v18u; ``torch.int8`` with a per-row scale halves their bytes and
    memory, 6.8e-3 output error at M3 shapes: 1.02-1.05x on random selections and chunked, 0.98x at f = 0.9 on the
    H200 with the bf16 CUDA step; NOTES v10t, v12m). With int8 partials the
    CUDA step's fused merge decodes them on chip; unfused, carrier parts go to a bf16 side buffer (v12m).
    ``tile_impl``: "auto" (v11, the default) runs the tile-outer step on the FA3-style sm_90a kernel of
    ``kernels.msa.cuda`` when ``kernels.msa.cuda.choose`` accepts the call (sm_90 device; bf16, 16 or 8 query heads
    per KV head, head_dim 128, bf16 or int8 partials; library already built, see ``kernels.msa.cuda.prepare``), else
    on Triton with one logged line saying why; "cuda" forces it (builds on first use, errors if it cannot run); "triton"
    forces the Triton kernel (NOTES.md v10, v11). ``fuse_merge=None`` (default): on with the CUDA step (it skips the
    fold on rows without KV-outer parts, so it costs nothing where it does not pay; v11), off with Triton.
    ``kv_impl`` (v12k): the KV-outer stage on the warp-specialised sm_90a kernel (``kernels.msa.cuda.
    kv_outer_partials_cuda``, "cuda"), on Triton ("triton"), or "auto": CUDA when ``kernels.msa.cuda.choose_kv``
    accepts the call (as ``tile_impl``: sm_90, bf16 cache, bf16 or int8 partials, no K/V scales, library built; never
    slower than Triton on a measured H200 row, NOTES.md v12k/v12n), else Triton with one logged reason.
    ``workspace`` (v14u): a ``kernels.msa.workspace.PrefillWorkspace`` to take the per-call buffers from
    (partials, split, CSR, carrier parts) instead of allocating them; same output bit for bit. A server keeps one
    per device; once it has seen the largest call, a call allocates nothing but a few small index tensors.
    ``block_table`` rows must cover every request (its row count is the request count used for the CSR).
    Selection slots may be in any order, with -1 entries anywhere; a row's valid ids must be distinct and below its
    request's block count (the indexer's contract; not checked, a check would sync). A block past a token's own
    position is masked causally, as in the reference. ``q`` may be a strided view (vLLM's slice of the fused QKV
    projection: unit last stride, 16-byte aligned rows for the CUDA kernels).
    """
    num_tokens, num_heads, head_dim = q.shape
    _check(q, kv_cache, selection)
    if tile_impl not in TILE_IMPLS:
        raise ValueError(f"tile_impl must be one of {TILE_IMPLS}, got {tile_impl!r}")
    if kv_impl not in TILE_IMPLS:
        raise ValueError(f"kv_impl must be one of {TILE_IMPLS}, got {kv_impl!r}")
    if block_table.shape[0] != query_start_loc.numel() - 1:
        raise MSAShapeError(f"block_table has {block_table.shape[0]} rows for {query_start_loc.numel() - 1} requests")
    scale = sm_scale if sm_scale is not None else head_dim ** -0.5
    if out is None:
        out = torch.empty_like(q)
    if num_tokens == 0:
        return out
    union_tile = tile_tokens(num_heads // kv_cache.shape[1]) if union_tile is None else union_tile
    min_share = min_share_for(union_tile) if min_share is None else min_share
    fp8_pages, fp8_v_scale = None, v_scale
    if fp8_step and (kv_cache.dtype != FP8_CACHE_DTYPE or tile_impl == "triton" or widen_fp8 is False):
        raise ValueError("fp8_step needs an fp8 e4m3 cache, the CUDA tile-outer step and widened pages")
    if fp8_q_terms not in (1, 2) or (fp8_q_terms == 2 and not fp8_step):
        raise ValueError(f"fp8_q_terms must be 1 or 2 (2 only with fp8_step), got {fp8_q_terms}")
    if partial_dtype is None:
        partial_dtype = default_partial_dtype(q.dtype, num_heads // kv_cache.shape[1], fp8_step)
    compact = None
    if fp8_step or _widens(widen_fp8, q, kv_cache, partial_dtype, (tile_impl, kv_impl), selection.shape[2],
                           union_tile):
        # renumbered before the split (it reads the compact table), widened after it (v18q): the FP8 step's
        # transposed copy only of the (page, KV head) pairs a tile-outer work item reads
        compact = compact_pages(block_table, seq_lens, kv_cache.shape[0], max_read_pages)
        block_table = compact.table
    pos = device_positions(query_start_loc, seq_lens, num_tokens)
    split = None  # max_union <= 0: KV-outer only
    if max_union > 0:
        req = device_requests(query_start_loc, num_tokens)
        # v10t: the split kernel also counts the CSR's segments (no sort); token windows keep the torch build
        split = tile_unions(selection, req, pos, block_table, union_tile, max_union, min_share, min_shared_pct,
                            csr_blocks=0 if window else block_table.shape[1], workspace=workspace,
                            query_start_loc=query_start_loc)
    if compact is not None:  # with fp8_step and a split to feed: the pairs a tile reads, transposed too
        read = (tile_read_flags(split.pages, split.union_size, compact.capacity, workspace)
                if fp8_step and split is not None else None)
        kv_cache, fp8_pages = widen_pages(kv_cache, compact, v_scale, q.dtype, workspace, transposed=read is not None,
                                          read=read)
        scale, k_scale, v_scale = scale * k_scale, 1.0, 1.0
    if split is None:
        csr = build_block_csr(selection, query_start_loc, block_table.shape[1], chunk, window)
        partial_o, partial_lse, partial_scale = _kv_partials(
            kv_impl, q, kv_cache, block_table, seq_lens, csr, pos, selection.shape[2], scale, chunk, num_warps,
            num_stages, prefetch, tile_rows, k_scale=k_scale, v_scale=v_scale, partial_dtype=partial_dtype,
            workspace=workspace)
        merge_partials(partial_o, partial_lse, out, selection, partial_scale=partial_scale)
        return out
    csr = (build_block_csr(split.rest, query_start_loc, block_table.shape[1], chunk, window) if window
           else csr_from_split(split, req, block_table.shape[1], chunk, workspace=workspace))
    partial_o, partial_lse, partial_scale = _kv_partials(
        kv_impl, q, kv_cache, block_table, seq_lens, csr, pos, selection.shape[2], scale, chunk, num_warps,
        num_stages, prefetch, tile_rows, k_scale=k_scale, v_scale=v_scale, partial_dtype=partial_dtype,
        workspace=workspace)
    tile_impl = _tile_impl(tile_impl, q, kv_cache, partial_o, union_tile, k_scale, v_scale)
    if fp8_pages is not None and tile_impl != "cuda":
        raise ValueError("fp8_step needs the CUDA tile-outer step, which cannot run here (see kernels.msa.cuda.choose)")
    if tile_impl == "cuda" and fp8_pages is None and kv_cache.dtype == FP8_CACHE_DTYPE:
        raise ValueError("the CUDA tile-outer step reads bf16 pages (or with fp8_step its e4m3 transposed pages), "
                         "not an fp8 cache as vLLM lays it out: leave widen_fp8 on")
    if fuse_merge is None:
        fuse_merge = tile_impl == "cuda"
    # v12m: with int8 partials the unfused tile-outer step writes its carrier parts to a bf16 side buffer (its
    # epilogue keeps the bf16 store) and the merge reads them from there, the KV-outer parts from `rest`'s slots
    carrier = (CarrierParts.empty(split.carrier, q.shape[1] // kv_cache.shape[1], head_dim, q.dtype, workspace)
               if partial_scale is not None and not fuse_merge else None)
    if tile_impl == "cuda":
        from kernels.msa.cuda import FP8_TWO_TERM_Q_VARIANT, tile_outer_attention_cuda

        step_kv, step_v_scale = (kv_cache, 1.0) if fp8_pages is None else (fp8_pages, fp8_v_scale)
        tile_outer_attention_cuda(q, step_kv, seq_lens, pos, req, split, scale, out, partial_o, partial_lse, union_tile,
                                  variant=FP8_TWO_TERM_Q_VARIANT if fp8_q_terms == 2 else None,
                                  fuse_merge=fuse_merge, partial_scale=partial_scale, carrier_parts=carrier,
                                  v_scale=step_v_scale)
    else:
        tile_outer_attention(q, kv_cache, seq_lens, pos, req, split, scale, out, partial_o, partial_lse, union_tile,
                             num_warps=tile_warps, num_stages=tile_stages, keys=tile_keys, per_sm=tile_per_sm,
                             k_scale=k_scale, v_scale=v_scale, fuse_merge=fuse_merge, partial_scale=partial_scale,
                             carrier_parts=carrier)
    # the merge runs over the rows the tile-outer kernel did not write (tiles left to KV-outer whole)
    merge_partials(partial_o, partial_lse, out, split.merge_sel if carrier is None else split.rest,
                   skip=split.owned if fuse_merge else split.direct, partial_scale=partial_scale, carrier=carrier)
    return out


INT8_PARTIAL_GROUPS = (8,)
"""v18u: query heads per KV head (8: M3 at TP 8) at which the FP8 step's KV-outer partials default to int8. H200,
128K, alternated with bf16 parts in one process (NOTES v18t, v18u): f = 0.9 1.023-1.035x, f = 1 1.000-1.004x, the
indexer's selections 1.042-1.050x, and half the partials' memory; at 16 query heads per KV head 0.978-1.007x, so
bf16 parts stay there."""


def default_partial_dtype(q_dtype: torch.dtype, group: int, fp8_step: bool) -> torch.dtype:
    """The KV-outer partials' dtype of a call that names none (``partial_dtype=None``): int8 with the FP8 step at
    ``INT8_PARTIAL_GROUPS`` query heads per KV head, else q's dtype. A server's workspace reservation asks the same
    function, so it reserves what the prefill takes."""
    return torch.int8 if fp8_step and group in INT8_PARTIAL_GROUPS else q_dtype


TILE_IMPLS = ("auto", "cuda", "triton")


def _widens(widen_fp8: bool | None, q: torch.Tensor, kv_cache: torch.Tensor, partial_dtype: torch.dtype | None,
            impls: tuple[str, str], top_k: int, tile_t: int) -> bool:
    """Whether this call widens its fp8 cache's pages to bf16 first (see ``widen_fp8``): asked for; or (None) when a
    step is forced onto CUDA (its kernels read bf16 pages), or a step on "auto" would run on CUDA with a bf16 cache:
    the KV-outer kernel, or (v18r) the tile-outer one alone (M3 at TP 8: the CUDA KV-outer kernel takes 16 query
    heads per KV head only). Checked on meta tensors: no allocation, no sync."""
    if kv_cache.dtype != FP8_CACHE_DTYPE or widen_fp8 is False:
        return False
    if widen_fp8 or "cuda" in impls:
        return True
    tile_impl, kv_impl = impls
    from kernels.msa import cuda

    bf16 = torch.empty(kv_cache.shape, dtype=q.dtype, device="meta")
    if kv_impl == "auto" and cuda.choose_kv(q, bf16, partial_dtype) is None:
        return True
    if tile_impl != "auto":
        return False
    parts = torch.empty((kv_cache.shape[1], 1, top_k, q.shape[1] // kv_cache.shape[1], q.shape[2]),
                        dtype=partial_dtype or q.dtype, device="meta")
    return cuda.choose(q, bf16, parts, tile_t) is None


def _tile_impl(tile_impl: str, q: torch.Tensor, kv_cache: torch.Tensor, partial_o: torch.Tensor, tile_t: int,
               k_scale: float, v_scale: float) -> str:
    """The tile-outer kernel this call runs: "cuda" or "triton" (``tile_impl="auto"``: see kernels.msa.cuda.choose;
    imported lazily so Triton-only installs never touch ctypes/nvcc)."""
    if tile_impl != "auto":
        return tile_impl
    from kernels.msa import cuda

    return "triton" if cuda.choose(q, kv_cache, partial_o, tile_t, k_scale, v_scale) else "cuda"


def _kv_partials(kv_impl: str, q: torch.Tensor, kv_cache: torch.Tensor, block_table: torch.Tensor,
                 seq_lens: torch.Tensor, csr: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int],
                 pos: torch.Tensor, top_k: int, scale: float, chunk: int, num_warps: int, num_stages: int,
                 prefetch: bool, tile_rows: int, k_scale: float, v_scale: float, partial_dtype: torch.dtype | None,
                 workspace: PrefillWorkspace | None = None,
                 ) -> PartialBuffers:
    """The KV-outer stage on the kernel ``kv_impl`` names (see ``sparse_attention_triton``), into the workspace's
    partial buffers when there is one."""
    if kv_impl == "auto":
        from kernels.msa import cuda

        kv_impl = "triton" if cuda.choose_kv(q, kv_cache, partial_dtype, k_scale, v_scale) else "cuda"
    num_kv_heads = kv_cache.shape[1]
    out = partial_buffers(workspace, num_kv_heads, q.shape[0], top_k, q.shape[1] // num_kv_heads, q.shape[2],
                          partial_dtype or q.dtype, q.device)
    if kv_impl == "cuda":
        from kernels.msa.cuda import kv_outer_partials_cuda

        return kv_outer_partials_cuda(q, kv_cache, block_table, seq_lens, csr, pos, top_k, scale, chunk,
                                      k_scale=k_scale, v_scale=v_scale, partial_dtype=partial_dtype, out=out)
    return kv_outer_partials(q, kv_cache, block_table, seq_lens, csr, pos, top_k, scale, chunk, num_warps,
                             num_stages, prefetch, tile_rows, k_scale=k_scale, v_scale=v_scale,
                             partial_dtype=partial_dtype, out=out)


Q_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
"""Query dtypes the prefill and decode kernels take (the output has q's dtype)."""


def _check(q: torch.Tensor, kv_cache: torch.Tensor, selection: torch.Tensor) -> None:
    problems = []
    if q.dim() != 3 or q.stride(2) != 1:
        problems.append(f"q must be [tokens, heads, head_dim] with unit last stride, got {tuple(q.shape)}")
    if kv_cache.dim() != 4 or kv_cache.shape[2] != BLOCK_SIZE or kv_cache.stride(3) != 1:
        problems.append(f"kv_cache must be [pages, kv_heads, {BLOCK_SIZE}, 2*head_dim], got {tuple(kv_cache.shape)}")
    elif q.dim() == 3 and (kv_cache.shape[3] != 2 * q.shape[2] or q.shape[1] % kv_cache.shape[1]):
        problems.append(f"q {tuple(q.shape)} does not fit kv_cache {tuple(kv_cache.shape)}")
    if q.dtype not in Q_DTYPES or kv_cache.dtype not in (q.dtype, FP8_CACHE_DTYPE):
        # vLLM's caches are q's dtype or fp8; a bf16 q on an fp32 cache used to run and return garbage
        problems.append(f"q / kv_cache dtypes {q.dtype} / {kv_cache.dtype} not supported: q float32, bfloat16 or "
                        f"float16, the cache the same or {FP8_CACHE_DTYPE}")
    if selection.dim() != 3 or not selection.is_contiguous():
        problems.append(f"selection must be a contiguous [kv_heads, tokens, top_k] tensor, got {tuple(selection.shape)}")
    elif q.dim() == 3 and kv_cache.dim() == 4 and tuple(selection.shape[:2]) != (kv_cache.shape[1], q.shape[0]):
        problems.append(f"selection {tuple(selection.shape)} does not fit q {tuple(q.shape)} / kv_cache heads")
    if problems:
        raise MSAShapeError("; ".join(problems))
