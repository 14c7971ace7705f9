"""The split + CSR kernels as they were before v13s (commit 5349e18), kept only as the same-run baseline of
``split_csr_bench.py``: ``_tile_union_kernel`` (all-pairs compares, one atomic per KV-outer entry), ``tile_unions``
and ``csr_from_split`` (a torch cumsum, the scatter kernel and the torch work-item chain, ``_work_items``).
Not used by the library.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.msa.reference import BLOCK_SIZE
from kernels.msa.tile_outer import (  # the helpers v13s left as they were
    DEFAULT_MAX_UNION,
    DEFAULT_MIN_SHARE,
    DEFAULT_MIN_SHARED_PCT,
    DEFAULT_TILE_T,
    TileSplit,
    _bit_or,
    _csr_slots,
)


@triton.jit
def _tile_union_kernel(
    sel_ptr, req_ptr, pos_ptr, bt_ptr, union_ptr, upage_ptr, count_ptr, clean_ptr, tokmask_ptr, rest_ptr, msel_ptr,
    carrier_ptr, direct_ptr, owned_ptr, work_ptr, nwork_ptr, seg_count_ptr, seg_pos_ptr,
    num_tokens, num_tiles, num_requests, max_blocks,
    stride_sh, stride_st, stride_btr,
    TILE_T: tl.constexpr, TOPK: tl.constexpr, MAX_UNION: tl.constexpr, MIN_SHARE: tl.constexpr,
    MIN_SHARED_PCT: tl.constexpr, BLOCK: tl.constexpr, CSR: tl.constexpr,
):
    i = tl.program_id(0)
    h = tl.program_id(1)
    N: tl.constexpr = TILE_T * TOPK
    offs = tl.arange(0, N)
    t = i * TILE_T + offs // TOPK
    k = offs % TOPK
    ok = t < num_tokens
    entry = (h.to(tl.int64) * num_tokens + t) * TOPK + k
    x = tl.load(sel_ptr + h * stride_sh + t.to(tl.int64) * stride_st + k, mask=ok, other=-1)
    valid = x >= 0
    t_tok = i * TILE_T + tl.arange(0, TILE_T)
    tok_ok = t_tok < num_tokens
    row = h.to(tl.int64) * num_tokens + t_tok
    tile = h.to(tl.int64) * num_tiles + i
    # Distinct ids without a sort: same[a, b] = entries a and b hold one id. A token's ids are distinct, so the
    # number of entries holding an id is the number of the tile's tokens that chose it.
    same = (x[:, None] == x[None, :]) & valid[:, None]
    n_same = tl.sum(same.to(tl.int32), axis=1)
    shared = valid & (n_same >= MIN_SHARE)
    # A tile must belong to one request (its blocks index that request's block table), and be worth it: most of
    # its entries shared, else the tile-outer pass (and one more part per token in the merge) is paid on top of
    # KV-outer's full cost (random selections share only the local block). Rejected tiles stop here, before the
    # rest of the all-pairs work (NOTES v8: this is what the split costs on random selections).
    r = tl.load(req_ptr + t, mask=ok, other=-1)
    r0 = tl.load(req_ptr + i * TILE_T)
    mixed = tl.max(tl.where(ok & (r != r0), 1, 0), axis=0)
    few = tl.sum(shared.to(tl.int32), 0) * 100 < MIN_SHARED_PCT * tl.sum(valid.to(tl.int32), 0)
    if (mixed != 0) | few:
        _kv_outer_tile(x, ok, entry, row, tok_ok, tile, count_ptr, rest_ptr, msel_ptr, carrier_ptr, direct_ptr,
                       owned_ptr, TILE_T, MAX_UNION)
        if CSR:
            _csr_slots(x, valid, r, h, t, entry, seg_count_ptr, seg_pos_ptr, num_requests, max_blocks, 0, ok, 1)
        return
    earlier = offs[None, :] < offs[:, None]
    first = shared & (tl.max(tl.where(same & earlier, 1, 0), axis=1) == 0)
    count = tl.sum(first.to(tl.int32), 0)
    if count > MAX_UNION:
        _kv_outer_tile(x, ok, entry, row, tok_ok, tile, count_ptr, rest_ptr, msel_ptr, carrier_ptr, direct_ptr,
                       owned_ptr, TILE_T, MAX_UNION)
        if CSR:
            _csr_slots(x, valid, r, h, t, entry, seg_count_ptr, seg_pos_ptr, num_requests, max_blocks, 0, ok, 1)
        return
    # Clean blocks (chosen by every token of the tile and wholly before its first token) need no mask in the
    # tile-outer loop: they come first in the union, the masked ones after.
    n_tok = tl.minimum(num_tokens - i * TILE_T, TILE_T)
    p0 = tl.load(pos_ptr + i * TILE_T)
    clean = first & (n_same == n_tok) & ((x + 1) * BLOCK <= p0 + 1)
    n_clean = tl.sum(clean.to(tl.int32), 0)
    rank = tl.where(clean, tl.cumsum(clean.to(tl.int32), 0) - 1,
                    n_clean + tl.cumsum((first & ~clean).to(tl.int32), 0) - 1)  # union position of first entries
    slot = tl.max(tl.where(same & first[None, :], rank[None, :], -1), axis=1)  # union position of every entry
    tl.store(union_ptr + tile * MAX_UNION + rank, x, mask=first)
    # the page of each union block, so the attention loop's K/V addresses hang on one load, not two
    page = tl.load(bt_ptr + r0.to(tl.int64) * stride_btr + x, mask=first, other=0)
    tl.store(upage_ptr + tile * MAX_UNION + rank, page, mask=first)
    tl.store(count_ptr + tile, count)
    tl.store(clean_ptr + tile, n_clean)
    if count > 0:  # the tile-outer kernel walks this list (persistent grid: no program per rejected tile)
        tl.store(work_ptr + tl.atomic_add(nwork_ptr, 1), tile)
    bits = tl.where(shared, tl.full((N,), 1, tl.int64) << tl.maximum(slot, 0).to(tl.int64), 0)
    tokmask = tl.reduce(tl.reshape(bits, (TILE_T, TOPK)), 1, _bit_or)
    tl.store(tokmask_ptr + tile * TILE_T + tl.arange(0, TILE_T), tokmask)
    # Per token: the first shared slot carries the tile-outer part into the merge; a token with no other entry
    # is written directly (no merge).
    carrier = tl.min(tl.reshape(tl.where(shared, k, TOPK), (TILE_T, TOPK)), axis=1)
    n_rest = tl.sum(tl.reshape((valid & ~shared).to(tl.int32), (TILE_T, TOPK)), axis=1)
    tl.store(carrier_ptr + row, tl.where(carrier < TOPK, carrier, -1), mask=tok_ok)
    tl.store(direct_ptr + row, ((n_rest == 0) & (carrier < TOPK)).to(tl.int8), mask=tok_ok)
    # the tile is in the work list: with the fused merge the tile-outer kernel writes all its rows
    tl.store(owned_ptr + row, tl.full((TILE_T,), 1, tl.int8) * (count > 0).to(tl.int8), mask=tok_ok)
    carrier_e = tl.reshape(tl.broadcast_to(carrier[:, None], (TILE_T, TOPK)), (N,))
    rest = tl.where(shared, -1, x)
    tl.store(rest_ptr + entry, rest, mask=ok)
    tl.store(msel_ptr + entry, tl.where(shared & (k == carrier_e), x, rest), mask=ok)
    if CSR:
        _csr_slots(x, valid & ~shared, r0, h, t, entry, seg_count_ptr, seg_pos_ptr, num_requests, max_blocks, 0, ok,
                   1)


@triton.jit
def _kv_outer_tile(x, ok, entry, row, tok_ok, tile, count_ptr, rest_ptr, msel_ptr, carrier_ptr, direct_ptr,
                   owned_ptr, TILE_T: tl.constexpr, MAX_UNION: tl.constexpr):
    """The whole tile goes KV-outer: every entry stays in ``rest`` and the merge, no carrier, no direct row."""
    tl.store(count_ptr + tile, MAX_UNION + 1)
    tl.store(rest_ptr + entry, x, mask=ok)
    tl.store(msel_ptr + entry, x, mask=ok)
    tl.store(carrier_ptr + row, tl.full((TILE_T,), -1, tl.int32), mask=tok_ok)
    tl.store(direct_ptr + row, tl.zeros((TILE_T,), tl.int8), mask=tok_ok)
    tl.store(owned_ptr + row, tl.zeros((TILE_T,), tl.int8), mask=tok_ok)


def tile_unions(
    selection: torch.Tensor, requests: torch.Tensor, positions: torch.Tensor, block_table: torch.Tensor,
    tile_t: int = DEFAULT_TILE_T, max_union: int = DEFAULT_MAX_UNION, min_share: int = DEFAULT_MIN_SHARE,
    min_shared_pct: int = DEFAULT_MIN_SHARED_PCT, num_warps: int = 2, csr_blocks: int = 0,
) -> TileSplit:
    """Split the selection between tile-outer (blocks chosen by >= ``min_share`` of a tile's tokens, when the
    tile belongs to one request, has at most ``max_union`` such blocks and at least ``min_shared_pct`` % of its
    entries are on them) and KV-outer (everything else).
    ``requests``: request id of every token (int64); ``positions``: its position (int32).
    ``min_share=1``: a whole tile goes one way or the other.
    ``csr_blocks`` > 0 (the block table's width): also count the KV-outer entries per segment and give each its
    slot (``seg_count``, ``seg_pos``), from which ``prefill.csr_from_split`` builds the CSR without a sort.
    """
    num_kv_heads, num_tokens, top_k = selection.shape
    if max_union > 63:
        raise ValueError(f"max_union must be <= 63 (int64 token masks), got {max_union}")
    num_tiles = triton.cdiv(num_tokens, tile_t)
    dev = selection.device
    split = TileSplit(
        union=torch.empty((num_kv_heads, num_tiles, max_union), dtype=torch.int32, device=dev),
        pages=torch.empty((num_kv_heads, num_tiles, max_union), dtype=torch.int32, device=dev),
        union_size=torch.empty((num_kv_heads, num_tiles), dtype=torch.int32, device=dev),
        clean=torch.zeros((num_kv_heads, num_tiles), dtype=torch.int32, device=dev),
        tokmask=torch.empty((num_kv_heads, num_tiles * tile_t), dtype=torch.int64, device=dev),
        rest=torch.empty((num_kv_heads, num_tokens, top_k), dtype=torch.int32, device=dev),
        merge_sel=torch.empty((num_kv_heads, num_tokens, top_k), dtype=torch.int32, device=dev),
        carrier=torch.empty((num_kv_heads, num_tokens), dtype=torch.int32, device=dev),
        direct=torch.empty((num_kv_heads, num_tokens), dtype=torch.bool, device=dev),
        owned=torch.empty((num_kv_heads, num_tokens), dtype=torch.bool, device=dev),
        work=torch.empty((num_kv_heads * num_tiles,), dtype=torch.int32, device=dev),
        num_work=torch.zeros((1,), dtype=torch.int32, device=dev),
        # the tiles this split cut (multiples of tile_t over the batch), as v19's attention kernels read them
        tile_first=(torch.arange(num_tiles + 1, dtype=torch.int32, device=dev) * tile_t).clamp_(max=num_tokens),
        seg_count=(torch.zeros((num_kv_heads * block_table.shape[0] * csr_blocks,), dtype=torch.int32, device=dev)
                   if csr_blocks else None),
        seg_pos=torch.empty((num_kv_heads, num_tokens, top_k), dtype=torch.int32, device=dev) if csr_blocks else None,
    )
    if num_tiles:
        _tile_union_kernel[(num_tiles, num_kv_heads)](
            selection, requests, positions, block_table, split.union, split.pages, split.union_size, split.clean,
            split.tokmask, split.rest, split.merge_sel, split.carrier, split.direct.view(torch.int8),
            split.owned.view(torch.int8), split.work, split.num_work,
            split.seg_count if csr_blocks else split.union_size, split.seg_pos if csr_blocks else split.rest,
            num_tokens, num_tiles, block_table.shape[0], max(csr_blocks, 1),
            selection.stride(0), selection.stride(1), block_table.stride(0),
            TILE_T=tile_t, TOPK=top_k, MAX_UNION=max_union, MIN_SHARE=min_share, MIN_SHARED_PCT=min_shared_pct,
            BLOCK=BLOCK_SIZE, CSR=csr_blocks > 0, num_warps=num_warps,
        )
    return split


@triton.jit
def _csr_scatter_kernel(rest_ptr, seg_pos_ptr, req_ptr, row_ptr, perm_ptr, num_entries, num_tokens, num_requests,
                        max_blocks, TOPK: tl.constexpr, BLOCK_E: tl.constexpr):
    e = tl.program_id(0).to(tl.int64) * BLOCK_E + tl.arange(0, BLOCK_E)  # e = (h * T + t) * TOPK + slot
    ok = e < num_entries
    x = tl.load(rest_ptr + e, mask=ok, other=-1)
    keep = x >= 0
    slot = tl.load(seg_pos_ptr + e, mask=keep, other=0)
    t = (e // TOPK) % num_tokens
    req = tl.load(req_ptr + t, mask=keep, other=0)
    seg = ((e // TOPK) // num_tokens * num_requests + req) * max_blocks + x
    tl.store(perm_ptr + tl.load(row_ptr + seg, mask=keep, other=0) + slot, e.to(tl.int32), mask=keep)


def csr_from_split(
    split: TileSplit, requests: torch.Tensor, max_blocks: int, chunk: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """The CSR of ``build_block_csr(split.rest, ...)`` (same offsets and work items; entries of a segment in the
    order the split kernel's atomics gave them) from the split kernel's counts and slots (``tile_unions`` with
    ``csr_blocks``): a cumsum and one scatter instead of a sort of every entry (v10t)."""
    if split.seg_count is None or split.seg_pos is None:
        raise ValueError("the split has no CSR counts: call tile_unions with csr_blocks=max_blocks")
    num_kv_heads, num_tokens, top_k = split.rest.shape
    num_segs = split.seg_count.numel()
    row_ptr = torch.zeros(num_segs + 1, dtype=torch.int64, device=split.rest.device)
    row_ptr[1:] = torch.cumsum(split.seg_count, 0)
    num_entries = split.rest.numel()
    perm = torch.empty(num_entries, dtype=torch.int32, device=split.rest.device)
    block_e = 1024
    if num_entries:
        _csr_scatter_kernel[(triton.cdiv(num_entries, block_e),)](
            split.rest, split.seg_pos, requests, row_ptr, perm, num_entries, num_tokens,
            num_segs // (num_kv_heads * max_blocks), max_blocks, TOPK=top_k, BLOCK_E=block_e)
    return (perm, row_ptr, *_work_items(row_ptr, chunk, num_entries), num_segs)


def _work_items(row_ptr: torch.Tensor, chunk: int, num_entries: int) -> tuple[torch.Tensor, torch.Tensor]:
    """v12's torch work items (the library's ``prefill._work_items`` runs v13s' kernels since)."""
    num_segs = row_ptr.numel() - 1
    counts = row_ptr[1:] - row_ptr[:-1]
    chunks = (counts + chunk - 1) // chunk
    work_end = torch.cumsum(chunks, 0)
    w = torch.arange(num_segs + triton.cdiv(num_entries, chunk), device=row_ptr.device)
    work_seg = torch.searchsorted(work_end, w, right=True)
    work_chunk = w - (work_end - chunks).gather(0, work_seg.clamp(max=num_segs - 1))
    return work_seg.to(torch.int32), work_chunk.to(torch.int32)


