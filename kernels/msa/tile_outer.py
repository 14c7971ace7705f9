"""Triton MSA prefill attention, tile-outer: the blocks that most of a query tile's tokens selected.

Neighbouring query tokens usually select mostly the same key blocks. For a tile of TILE_T consecutive tokens of one
request and one KV head, ``tile_unions`` (one program per (tile, KV head), an all-pairs compare of the tile's TILE_T
x 16 entries, no sort, no host sync) marks as shared the blocks that >= MIN_SHARE of the tile's tokens chose, lists
them (at most MAX_UNION, with their pages), and records per token a bit mask of the shared blocks it chose, the
entries left to KV-outer (``rest``), a carrier slot and a ``direct`` flag. ``tile_outer_attention`` then runs one
program per (tile, KV head): the tile's tokens x 16 query heads are the MMA rows (128 rows for TILE_T = 8), each
shared block's K/V is loaded once for all of them (in KEYS-key pieces), each row is masked to its own token's
selection and causality, and the softmax stays on chip. A token whose entries were all shared gets its output
directly; another one hands its tile-outer result to the merge as one more part (in its carrier slot), next to its
KV-outer parts. Tiles are cut per request at multiples of TILE_T of the token positions (``request_tiles``: a
request's first and last tiles may be short), so a request's rows are the same alone or in any batch, and a prompt's
rows the same prefilled whole or in chunks that start at such a multiple. Tiles with more than MAX_UNION shared
blocks, or with fewer than MIN_SHARED_PCT % of their entries on shared blocks (random selections share only the
local block) stay KV-outer whole; the split kernel stops early for them. The union lists first the *clean* blocks
(chosen by every token of the tile and wholly before its first token), which the attention loop runs without any
mask, then the others; and the split kernel appends each tile with tile-outer work to a device-side work list, which
the attention kernel walks.

Why thresholds: a tile-outer block costs 128 rows x 128 keys of MMA work whoever chose it, KV-outer costs a Q
gather + a partial write + a merge read per chosen (token, block); on the H200 a block is worth doing tile-outer
when about 3 or more of the 8 tokens chose it (NOTES.md v7 has the estimate and the sweeps).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from kernels.msa.merge import LOG2E, CarrierParts, store_part, weighted_part
from kernels.msa.reference import BLOCK_SIZE
from kernels.msa.workspace import PrefillWorkspace, empty

DEFAULT_TILE_T = 8
"""Tokens per tile-outer tile: 8 tokens x 16 heads = 128 MMA rows (M3's group of 16)."""
DEFAULT_MAX_UNION = 32
"""Largest union (distinct shared blocks per tile and KV head) handled tile-outer; bit masks are int64."""
DEFAULT_MIN_SHARE = 3
"""A block goes tile-outer when at least this many of the tile's tokens chose it (NOTES.md v7)."""
TILE_ROWS = 128
MAX_TILE_T = 16


def tile_tokens(group: int) -> int:
    """v18r: tokens per tile for ``group`` query heads per KV head: 128 MMA rows (8 tokens at M3's 16 heads per KV
    head, 16 at TP 8's 8), kept within [8, 16] tokens (the split kernel compares all pairs of a tile's entries)."""
    return min(MAX_TILE_T, max(DEFAULT_TILE_T, TILE_ROWS // max(1, group)))


def min_share_for(tile_t: int) -> int:
    """v18r: ``DEFAULT_MIN_SHARE`` scaled to the tile: NOTES v7's break-even of 3 of 8 tokens weighs a block's fixed
    tile-outer cost (128 rows) against KV-outer's cost per (token, block), which is proportional to the group, so a
    16-token tile of 8 heads per token needs 6."""
    return -(-DEFAULT_MIN_SHARE * tile_t // DEFAULT_TILE_T)
DEFAULT_MIN_SHARED_PCT = 75
"""A tile goes tile-outer only if at least this share (%) of its entries are on shared blocks (NOTES.md v7)."""
SPLIT_WARPS = 1
"""Warps per program of the split kernel (v18t, H200, 128K: 1 warp 0.25 ms at f = 0.9 / 1 and 0.29 on the indexer's
selections, 2 warps 0.45 / 0.42, 4 0.40 / 0.33, 8 0.80 / 0.67: its compares are per-thread work, more resident
programs hide its loads' latency)."""
DEFAULT_CSR_LANES = 8
"""v14u: counters per CSR segment (lane = token % lanes, lane-major so a segment's lanes sit in different 32-byte
sectors): on random selections every resident tile hits the same ~512 hot sectors of the 4096 counters, and the
same-sector atomics queue in the L2 (NOTES v13s); 1 = v13s's one counter per segment."""


@triton.jit
def _bit_or(a, b):
    return a | b


@triton.jit
def _tile_matches(sel_h, x, valid, t0, t_end, stride_st, TILE_T: tl.constexpr, TOPK: tl.constexpr):
    """Per entry of the tile (``x``, N = TILE_T x TOPK ids, -1 invalid): how many of the tile's entries hold its id
    (= how many tokens chose it: a token's ids are distinct), and the index of the first one (itself if invalid).
    Each thread compares its own entries with every id of the tile, read as scalars (one broadcast load each),
    last first so that the earliest match is the last one written: no N x N matrix, few registers."""
    N: tl.constexpr = TILE_T * TOPK
    offs = tl.arange(0, N)
    n_same = tl.zeros((N,), tl.int32)
    first_idx = offs
    xv = tl.where(valid, x, -2)  # -2: an invalid entry matches nothing (padding ids are -1)
    for jj in tl.range(0, TILE_T):
        j = TILE_T - 1 - jj
        row = sel_h + (t0 + j).to(tl.int64) * stride_st
        live = t0 + j < t_end
        for kk in tl.static_range(TOPK):
            k = TOPK - 1 - kk
            eq = xv == tl.load(row + k, mask=live, other=-1)
            n_same += eq.to(tl.int32)
            first_idx = tl.where(eq, j * TOPK + k, first_idx)
    return n_same, first_idx


@triton.jit
def _tile_matches_all_pairs(x, valid, TILE_T: tl.constexpr, TOPK: tl.constexpr):
    """``_tile_matches`` as one N x N compare of the tile's entries (same results): for the interpreter, where each
    of the loop's TILE_T x TOPK scalar steps pays Python's overhead and one N x N numpy compare does not. (On a GPU
    the matrix needs 255 registers and spills: v13s.)"""
    N: tl.constexpr = TILE_T * TOPK
    offs = tl.arange(0, N)
    eq = tl.where(valid, x, -2)[:, None] == x[None, :]  # x holds -1 where padded: an invalid entry matches nothing
    n_same = tl.sum(eq.to(tl.int32), 1)
    first_idx = tl.minimum(tl.min(tl.where(eq, offs[None, :], N), 1), offs)
    return n_same, first_idx


@triton.jit
def _tile_union_kernel(
    sel_ptr, req_ptr, pos_ptr, bt_ptr, first_ptr, union_ptr, upage_ptr, count_ptr, clean_ptr, tokmask_ptr, rest_ptr,
    msel_ptr, carrier_ptr, direct_ptr, owned_ptr, work_ptr, nwork_ptr, seg_count_ptr, seg_pos_ptr,
    num_tokens, num_tiles, num_requests, max_blocks, num_segs,
    stride_sh, stride_st, stride_btr,
    TILE_T: tl.constexpr, TOPK: tl.constexpr, MAX_UNION: tl.constexpr, MIN_SHARE: tl.constexpr,
    MIN_SHARED_PCT: tl.constexpr, BLOCK: tl.constexpr, CSR: tl.constexpr, LANES: tl.constexpr,
    ALL_PAIRS: tl.constexpr,
):
    i = tl.program_id(0)
    h = tl.program_id(1)
    N: tl.constexpr = TILE_T * TOPK
    offs = tl.arange(0, N)
    # v19: tile i is tokens [first[i], first[i + 1]) of one request (``request_tiles``; empty past the last one)
    t0 = tl.load(first_ptr + i)
    t_end = tl.load(first_ptr + i + 1)
    t = t0 + offs // TOPK
    k = offs % TOPK
    ok = t < t_end
    entry = (h.to(tl.int64) * num_tokens + t) * TOPK + k
    x = tl.load(sel_ptr + h * stride_sh + t.to(tl.int64) * stride_st + k, mask=ok, other=-1)
    valid = x >= 0
    t_tok = t0 + tl.arange(0, TILE_T)
    tok_ok = t_tok < t_end
    row = h.to(tl.int64) * num_tokens + t_tok
    tile = h.to(tl.int64) * num_tiles + i
    # v13s: who else in the tile chose each entry's block, token by token (TOPK x N compares reduced inside each
    # thread's registers) instead of one N x N all-pairs matrix (255 registers + spills, 4 programs per SM).
    if ALL_PAIRS:
        n_same, first_idx = _tile_matches_all_pairs(x, valid, TILE_T, TOPK)
    else:
        n_same, first_idx = _tile_matches(sel_ptr + h * stride_sh, x, valid, t0, t_end, stride_st,
                                          TILE_T, TOPK)
    shared = valid & (n_same >= MIN_SHARE)
    # A tile must be worth it: most of its entries shared, else the tile-outer pass (and one more part per token in
    # the merge) is paid on top of KV-outer's full cost (random selections share only the local block). Rejected
    # tiles stop here, before the union's ranks, pages and masks (NOTES v8); so do the empty tiles past the last.
    r0 = tl.load(req_ptr + t0, mask=t0 < t_end, other=0)  # the tile's one request (any id for an empty tile)
    few = tl.sum(shared.to(tl.int32), 0) * 100 < MIN_SHARED_PCT * tl.sum(valid.to(tl.int32), 0)
    if few | (t_end <= t0):
        _kv_outer_tile(x, ok, entry, row, tok_ok, tile, count_ptr, clean_ptr, rest_ptr, msel_ptr, carrier_ptr,
                       direct_ptr, owned_ptr, TILE_T, MAX_UNION)
        if CSR:
            _csr_slots(x, valid, r0, h, t, entry, seg_count_ptr, seg_pos_ptr, num_requests, max_blocks, num_segs, ok,
                       LANES)
        return
    first = shared & (first_idx == offs)  # the tile's first entry holding its id
    count = tl.sum(first.to(tl.int32), 0)
    if count > MAX_UNION:
        _kv_outer_tile(x, ok, entry, row, tok_ok, tile, count_ptr, clean_ptr, rest_ptr, msel_ptr, carrier_ptr,
                       direct_ptr, owned_ptr, TILE_T, MAX_UNION)
        if CSR:
            _csr_slots(x, valid, r0, h, t, entry, seg_count_ptr, seg_pos_ptr, num_requests, max_blocks, num_segs, ok,
                       LANES)
        return
    # Clean blocks (chosen by every token of the tile and wholly before its first token) need no mask in the
    # tile-outer loop: they come first in the union, the masked ones after.
    n_tok = t_end - t0
    p0 = tl.load(pos_ptr + t0)
    clean = first & (n_same == n_tok) & ((x + 1) * BLOCK <= p0 + 1)
    n_clean = tl.sum(clean.to(tl.int32), 0)
    rank = tl.where(clean, tl.cumsum(clean.to(tl.int32), 0) - 1,
                    n_clean + tl.cumsum((first & ~clean).to(tl.int32), 0) - 1)  # union position of first entries
    slot = tl.gather(rank, first_idx, 0)  # union position of every shared entry (that of its id's first entry)
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
        _csr_slots(x, valid & ~shared, r0, h, t, entry, seg_count_ptr, seg_pos_ptr, num_requests, max_blocks,
                   num_segs, ok, LANES)


@triton.jit
def _csr_slots(x, kv_outer, req, h, t, entry, seg_count_ptr, seg_pos_ptr, num_requests, max_blocks, num_segs, ok,
               LANES: tl.constexpr):
    """v10t: the KV-outer CSR's counting pass, done here instead of a torch sort of the whole selection. Each entry
    left to KV-outer takes the next free slot of its segment (KV head, request, block) by an atomic increment of the
    segment's count; ``csr_from_split`` turns counts and slots into offsets and the entry list. The order of entries
    inside a segment is the order of the atomics, which changes no result (each entry is its own partial).
    v14u: the count of lane ``t % LANES`` of the segment (counters lane-major: [LANES, num_segs])."""
    seg = (h * num_requests + req) * max_blocks + x
    if LANES > 1:
        seg += (t % LANES) * num_segs
    slot = tl.atomic_add(seg_count_ptr + seg, 1, mask=kv_outer & ok, sem="relaxed")
    tl.store(seg_pos_ptr + entry, tl.where(kv_outer, slot, -1), mask=ok)


@triton.jit
def _kv_outer_tile(x, ok, entry, row, tok_ok, tile, count_ptr, clean_ptr, rest_ptr, msel_ptr, carrier_ptr,
                   direct_ptr, owned_ptr, TILE_T: tl.constexpr, MAX_UNION: tl.constexpr):
    """The whole tile goes KV-outer: every entry stays in ``rest`` and the merge, no carrier, no direct row."""
    tl.store(count_ptr + tile, MAX_UNION + 1)
    tl.store(clean_ptr + tile, 0)  # (v13s: every tile writes its ``clean``, so the field needs no memset)
    tl.store(rest_ptr + entry, x, mask=ok)
    tl.store(msel_ptr + entry, x, mask=ok)
    tl.store(carrier_ptr + row, tl.full((TILE_T,), -1, tl.int32), mask=tok_ok)
    tl.store(direct_ptr + row, tl.zeros((TILE_T,), tl.int8), mask=tok_ok)
    tl.store(owned_ptr + row, tl.zeros((TILE_T,), tl.int8), mask=tok_ok)


class TileSplit(NamedTuple):
    """What ``tile_unions`` decided, all on the device."""

    union: torch.Tensor
    """[Hkv, tiles, max_union] int32: the tile's shared blocks, clean ones first (entries past ``union_size`` unwritten)"""
    pages: torch.Tensor
    """[Hkv, tiles, max_union] int32: their KV-cache pages"""
    union_size: torch.Tensor
    """[Hkv, tiles] int32: union size; > max_union = the tile runs KV-outer only"""
    clean: torch.Tensor
    """[Hkv, tiles] int32: the first ``clean`` union blocks were chosen by every token and precede them all"""
    tokmask: torch.Tensor
    """[Hkv, tiles * tile_t] int64: bit j = the token chose union entry j"""
    rest: torch.Tensor
    """[Hkv, T, top_k] int32: the entries left to KV-outer (shared ones set to -1)"""
    merge_sel: torch.Tensor
    """[Hkv, T, top_k] int32: ``rest`` plus each token's carrier slot (the tile-outer part) for the merge"""
    carrier: torch.Tensor
    """[Hkv, T] int32: slot whose partial holds the tile-outer part, -1 if none"""
    direct: torch.Tensor
    """[Hkv, T] bool: every entry (at least one) is shared: tile-outer writes the output, the merge skips the row"""
    owned: torch.Tensor
    """[Hkv, T] bool: the row's tile has tile-outer work (it is in ``work``): with the fused merge (v9) the
    tile-outer kernel writes the row's output, KV-outer parts included, and the merge kernel skips it"""
    work: torch.Tensor
    """[Hkv * tiles] int32: the tiles (h * tiles + i) that have tile-outer work, in no particular order"""
    num_work: torch.Tensor
    """[1] int32: how many entries of ``work`` are filled"""
    tile_first: torch.Tensor
    """[tiles + 1] int32 (v19, ``request_tiles``): tile i is the tokens [tile_first[i], tile_first[i + 1]) of one
    request; the tiles past the last one are empty (= num_tokens)"""
    seg_count: torch.Tensor | None = None
    """[csr_lanes * Hkv * requests * max_blocks] int32 (with ``csr_blocks``): KV-outer entries per lane and segment
    (KV head, request, block), lane-major, the CSR's counts (v10t; lanes v14u)"""
    seg_pos: torch.Tensor | None = None
    """[Hkv, T, top_k] int32 (with ``csr_blocks``): each KV-outer entry's slot inside its lane of its segment, -1
    elsewhere"""
    csr_lanes: int = 1
    """Counters per segment in ``seg_count`` (an entry of token t counts in lane t % csr_lanes)"""


def tile_unions(
    selection: torch.Tensor, requests: torch.Tensor, positions: torch.Tensor, block_table: torch.Tensor,
    tile_t: int = DEFAULT_TILE_T, max_union: int = DEFAULT_MAX_UNION, min_share: int = DEFAULT_MIN_SHARE,
    min_shared_pct: int = DEFAULT_MIN_SHARED_PCT, num_warps: int = SPLIT_WARPS, csr_blocks: int = 0,
    workspace: PrefillWorkspace | None = None, csr_lanes: int = DEFAULT_CSR_LANES,
    query_start_loc: torch.Tensor | None = None,
) -> TileSplit:
    """Split the selection between tile-outer (blocks chosen by >= ``min_share`` of a tile's tokens, when the
    tile (a run of one request's tokens, ``request_tiles``) has at most ``max_union`` such blocks and at least
    ``min_shared_pct`` % of its entries are on them) and KV-outer (everything else).
    ``requests``: request id of every token (int64); ``positions``: its position (int32).
    ``min_share=1``: a whole tile goes one way or the other.
    ``csr_blocks`` > 0 (the block table's width): also count the KV-outer entries per segment and give each its
    slot (``seg_count``, ``seg_pos``), from which ``prefill.csr_from_split`` builds the CSR without a sort.
    ``workspace``: take the split's arrays from there instead of allocating them (v14u).
    ``csr_lanes``: counters per segment (``DEFAULT_CSR_LANES``; 1 = v13s).
    ``query_start_loc``: the batch's, if the caller has it (the tiles are cut per request, ``request_tiles``).
    """
    num_kv_heads, num_tokens, top_k = selection.shape
    if max_union > 63:
        raise ValueError(f"max_union must be <= 63 (int64 token masks), got {max_union}")
    if csr_lanes < 1 or csr_lanes & (csr_lanes - 1):
        raise ValueError(f"csr_lanes must be a power of two, got {csr_lanes}")
    num_tiles = request_tile_count(num_tokens, block_table.shape[0], tile_t)
    dev = selection.device
    # one memset for the two zero-initialised counters (v13s: each torch op is a launch); seg_count 16-B aligned
    num_segs = num_kv_heads * block_table.shape[0] * csr_blocks
    lanes = csr_lanes if csr_blocks else 1
    zeros = empty(workspace, "split_counters", (4 + num_segs * lanes,), torch.int32, dev).zero_()

    def buf(name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        return empty(workspace, f"split_{name}", shape, dtype, dev)

    entries, rows = (num_kv_heads, num_tokens, top_k), (num_kv_heads, num_tokens)
    split = TileSplit(
        union=buf("union", (num_kv_heads, num_tiles, max_union), torch.int32),
        pages=buf("pages", (num_kv_heads, num_tiles, max_union), torch.int32),
        union_size=buf("union_size", (num_kv_heads, num_tiles), torch.int32),
        clean=buf("clean", (num_kv_heads, num_tiles), torch.int32),
        tokmask=buf("tokmask", (num_kv_heads, num_tiles * tile_t), torch.int64),
        rest=buf("rest", entries, torch.int32),
        merge_sel=buf("merge_sel", entries, torch.int32),
        carrier=buf("carrier", rows, torch.int32),
        direct=buf("direct", rows, torch.bool),
        owned=buf("owned", rows, torch.bool),
        work=buf("work", (num_kv_heads * num_tiles,), torch.int32),
        num_work=zeros[:1],
        tile_first=request_tiles(requests, positions, block_table.shape[0], tile_t, workspace, query_start_loc),
        seg_count=zeros[4:] if csr_blocks else None,
        seg_pos=buf("seg_pos", entries, torch.int32) if csr_blocks else None,
        csr_lanes=lanes,
    )
    if num_tiles:
        _tile_union_kernel[(num_tiles, num_kv_heads)](
            selection, requests, positions, block_table, split.tile_first, split.union, split.pages, split.union_size,
            split.clean, split.tokmask, split.rest, split.merge_sel, split.carrier, split.direct.view(torch.int8),
            split.owned.view(torch.int8), split.work, split.num_work,
            split.seg_count if csr_blocks else split.union_size, split.seg_pos if csr_blocks else split.rest,
            num_tokens, num_tiles, block_table.shape[0], max(csr_blocks, 1), num_segs,
            selection.stride(0), selection.stride(1), block_table.stride(0),
            TILE_T=tile_t, TOPK=top_k, MAX_UNION=max_union, MIN_SHARE=min_share, MIN_SHARED_PCT=min_shared_pct,
            BLOCK=BLOCK_SIZE, CSR=csr_blocks > 0, LANES=lanes, ALL_PAIRS=compare_all_pairs(dev),
            num_warps=num_warps,
        )
    return split


def request_tile_count(num_tokens: int, num_requests: int, tile_t: int) -> int:
    """Tiles ``request_tiles`` lays out for any batch of ``num_tokens`` tokens in ``num_requests`` requests (known
    on the host, no sync): a request's first tile may be short (it starts at its context's position, v19b) and so
    may its last, so at most ``ceil(n / tile_t) + 1`` per request, and the sum is below ``num_tokens / tile_t +
    2 * num_requests``."""
    return triton.cdiv(num_tokens, tile_t) + 2 * num_requests - 1 if num_tokens else 0


def request_tiles(requests: torch.Tensor, positions: torch.Tensor, num_requests: int, tile_t: int,
                  workspace: PrefillWorkspace | None = None,
                  query_start_loc: torch.Tensor | None = None) -> torch.Tensor:
    """The tiles as runs of one request's tokens cut at the multiples of ``tile_t`` of their *positions* (v19b), in
    token order: [request_tile_count + 1] int32, tile i = tokens [first[i], first[i + 1]), empty past the last tile.

    Tiles never span two requests (v19), so a request's split, unions and tile-outer rows do not depend on the
    other requests of its batch (batch invariance). Cut at absolute positions, the tiles of a prompt's tokens are
    also the same whether it is prefilled whole or in chunks that start at a multiple of ``tile_t`` (a prefix-cache
    hit, whole KV-cache blocks; a chunked prefill's chunks of such a size): the same bits either way.
    ``requests``: the request id of each token (int64, non-decreasing, ``merge.device_requests``); ``positions``:
    each token's position (consecutive within a request, ``merge.device_positions``); ``query_start_loc`` (the
    caller's, if it has it): else found from ``requests``. One kernel, no host sync."""
    num_tokens = requests.numel()
    num_tiles = request_tile_count(num_tokens, num_requests, tile_t)
    first = empty(workspace, "split_tile_first", (num_tiles + 1,), torch.int32, requests.device)
    if query_start_loc is None:
        query_start_loc = torch.searchsorted(requests, torch.arange(num_requests + 1, device=requests.device))
    _request_tiles_kernel[(triton.cdiv(max(num_tokens, num_tiles + 1), REQUEST_TILES_BLOCK),)](
        requests, positions, query_start_loc, first, num_tokens, num_requests, num_tiles, TILE_T=tile_t,
        R_PAD=triton.next_power_of_2(max(num_requests, 1)), BLOCK=REQUEST_TILES_BLOCK)
    return first


REQUEST_TILES_BLOCK = 1024


@triton.jit
def _request_tiles_kernel(req_ptr, pos_ptr, qsl_ptr, first_ptr, num_tokens, num_requests, num_tiles,
                          TILE_T: tl.constexpr, R_PAD: tl.constexpr, BLOCK: tl.constexpr):
    """Every program lays out the requests' tiles (all R_PAD at once: each request's first token's offset inside
    its tile of positions, its tile count, the tiles before it); then each of its tokens that opens a tile (its
    request's first, and every one at a position that is a multiple of TILE_T) writes itself as that tile's first,
    and its share of the tiles past the last one get ``num_tokens`` (empty)."""
    r = tl.arange(0, R_PAD)
    live = r < num_requests
    start = tl.load(qsl_ptr + r, mask=live, other=0)
    n = tl.load(qsl_ptr + r + 1, mask=live, other=0) - start
    lead = tl.load(pos_ptr + start, mask=live & (n > 0), other=0) % TILE_T
    counts = tl.where(n > 0, (lead + n + TILE_T - 1) // TILE_T, 0)
    before = (tl.cumsum(counts, 0) - counts).to(tl.int32)
    used = tl.sum(counts, 0)
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = i < num_tokens
    req = tl.load(req_ptr + i, mask=ok, other=0).to(tl.int32)
    local = i - tl.load(qsl_ptr + req, mask=ok, other=0).to(tl.int32)
    at = tl.gather(lead, req, 0).to(tl.int32) + local  # the token's offset from its request's first tile's start
    tile = tl.gather(before, req, 0) + at // TILE_T
    tl.store(first_ptr + tile, i, mask=ok & ((local == 0) | (at % TILE_T == 0)))
    tl.store(first_ptr + i, tl.full((BLOCK,), 0, tl.int32) + num_tokens, mask=(i >= used) & (i <= num_tiles))


def compare_all_pairs(device: torch.device) -> bool:
    """The tile's matches as one all-pairs compare on the CPU (the interpreter), token by token on a GPU."""
    return device.type == "cpu"


@triton.jit
def _tile_outer_kernel(
    q_ptr, kv_ptr, union_ptr, upage_ptr, count_ptr, clean_ptr, tokmask_ptr, carrier_ptr, direct_ptr, work_ptr,
    nwork_ptr, first_ptr, seq_lens_ptr, pos_ptr, req_ptr, rest_ptr, out_ptr, po_ptr, plse_ptr, ps_ptr, co_ptr,
    clse_ptr, num_tokens, num_tiles, sm_scale_log2, v_scale,
    stride_qt, stride_qh,
    stride_kvp, stride_kvh, stride_kvt,
    stride_ot, stride_oh,
    GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, HEAD_DIM: tl.constexpr, TILE_T: tl.constexpr,
    TOPK: tl.constexpr, MAX_UNION: tl.constexpr, KEYS: tl.constexpr, BLOCK: tl.constexpr, USE_CLEAN: tl.constexpr,
    WARP_SPEC: tl.constexpr, SCALE_V: tl.constexpr, FUSE_MERGE: tl.constexpr, SIDE: tl.constexpr,
):
    ROWS: tl.constexpr = TILE_T * GROUP_PAD
    PIECES: tl.constexpr = BLOCK // KEYS  # KEYS < BLOCK walks each block in pieces (smaller S tile, fewer registers)
    offs_r = tl.arange(0, ROWS)
    r_tok = offs_r // GROUP_PAD
    r_g = offs_r % GROUP_PAD
    offs_d = tl.arange(0, HEAD_DIM)
    offs_j = tl.arange(0, KEYS)
    # Programs walk the list of tiles with tile-outer work (strided: a persistent grid of a few programs per SM,
    # or one program per list entry), so no program is spent on a tile left to KV-outer.
    for w in range(tl.program_id(0), tl.load(nwork_ptr), tl.num_programs(0)):
        tile = tl.load(work_ptr + w).to(tl.int64)  # = h * num_tiles + i
        h = (tile // num_tiles).to(tl.int32)
        i = (tile % num_tiles).to(tl.int32)
        cnt = tl.load(count_ptr + tile)
        n_clean = 0
        if USE_CLEAN:
            n_clean = tl.load(clean_ptr + tile)
        t0 = tl.load(first_ptr + i)
        n_tok = tl.load(first_ptr + i + 1) - t0
        t = t0 + r_tok
        row_ok = (r_tok < n_tok) & (r_g < GROUP)
        q = tl.load(q_ptr + t.to(tl.int64)[:, None] * stride_qt + (h * GROUP + r_g)[:, None] * stride_qh
                    + offs_d[None, :], mask=row_ok[:, None], other=0.0)
        p_t = tl.load(pos_ptr + t, mask=row_ok, other=-1)
        tm = tl.load(tokmask_ptr + tile * TILE_T + r_tok)
        seq_len = tl.load(seq_lens_ptr + tl.load(req_ptr + t0))
        kv_head = kv_ptr + h * stride_kvh
        m = tl.full((ROWS,), float("-inf"), tl.float32)  # running max of the scaled (base-2) scores
        l = tl.zeros((ROWS,), tl.float32)
        acc = tl.zeros((ROWS, HEAD_DIM), tl.float32)
        # Clean blocks: every row chose them and sees every key, so no mask (and no -inf row) can occur.
        for jj in tl.range(0, n_clean * PIECES, warp_specialize=WARP_SPEC):
            page = tl.load(upage_ptr + tile * MAX_UNION + jj // PIECES).to(tl.int64)
            key = (jj % PIECES) * KEYS + offs_j
            kv_base = kv_head + page * stride_kvp
            k_t = tl.load(kv_base + key[None, :] * stride_kvt + offs_d[:, None]).to(q.dtype)  # fp8 cache: widened
            v = tl.load(kv_base + key[:, None] * stride_kvt + HEAD_DIM + offs_d[None, :]).to(q.dtype)
            s = tl.dot(q, k_t)
            m_new = tl.maximum(m, tl.max(s, axis=1) * sm_scale_log2)
            alpha = tl.exp2(m - m_new)
            p = tl.exp2(s * sm_scale_log2 - m_new[:, None])  # one FMA per score
            l = l * alpha + tl.sum(p, axis=1)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
            m = m_new
        # The others: per-row selection mask and causality (the local block), rows may see nothing yet.
        for jj in tl.range(n_clean * PIECES, cnt * PIECES, warp_specialize=WARP_SPEC):
            j = jj // PIECES
            blk = tl.load(union_ptr + tile * MAX_UNION + j)
            page = tl.load(upage_ptr + tile * MAX_UNION + j).to(tl.int64)
            key = (jj % PIECES) * KEYS + offs_j
            kpos = blk * BLOCK + key
            kv_ok = kpos < seq_len
            kv_base = kv_head + page * stride_kvp
            k_t = tl.load(kv_base + key[None, :] * stride_kvt + offs_d[:, None], mask=kv_ok[None, :],
                          other=0.0).to(q.dtype)
            v = tl.load(kv_base + key[:, None] * stride_kvt + HEAD_DIM + offs_d[None, :], mask=kv_ok[:, None],
                        other=0.0).to(q.dtype)
            s = tl.dot(q, k_t) * sm_scale_log2
            chosen = ((tm >> j) & 1) != 0  # this row's token selected union entry j
            s = tl.where(chosen[:, None] & (kpos[None, :] <= p_t[:, None]) & kv_ok[None, :], s, float("-inf"))
            m_new = tl.maximum(m, tl.max(s, axis=1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with nothing visible yet stay finite
            alpha = tl.exp2(m - m_safe)
            p = tl.exp2(s - m_safe[:, None])
            l = l * alpha + tl.sum(p, axis=1)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
            m = m_new
        if SCALE_V:  # fp8 cache: V's per-tensor scale (K's is in sm_scale_log2; KV-outer parts carry theirs)
            acc = acc * v_scale
        row = h.to(tl.int64) * num_tokens + t
        if FUSE_MERGE:
            # v9: fold this tile's KV-outer parts (written before this launch) into the on-chip softmax state
            # and write every row: no carrier part is written and read back, no merge pass over these rows.
            ent = tl.arange(0, TILE_T * TOPK)
            n_rest = tl.sum((tl.load(rest_ptr + (h.to(tl.int64) * num_tokens + t0) * TOPK + ent,
                                     mask=ent // TOPK < n_tok, other=-1) >= 0).to(tl.int32), 0)
            if n_rest > 0:  # f = 1: nothing to fold, skip the 16 passes
                for k in range(TOPK):
                    has = tl.load(rest_ptr + row * TOPK + k, mask=row_ok, other=-1) >= 0
                    part = (row * TOPK + k) * GROUP + r_g
                    lse = tl.load(plse_ptr + part, mask=has, other=float("-inf"))
                    m_new = tl.maximum(m, lse)
                    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
                    alpha = tl.exp2(m - m_safe)
                    wk = tl.exp2(lse - m_safe)  # (not `w`: the work-list loop's variable)
                    l = l * alpha + wk
                    acc = acc * alpha[:, None] + weighted_part(po_ptr, ps_ptr, part, wk, offs_d, has, HEAD_DIM, "")
                    m = m_new
        acc = acc / tl.where(l > 0, l, 1.0)[:, None]
        out = (out_ptr + t.to(tl.int64)[:, None] * stride_ot + (h * GROUP + r_g)[:, None] * stride_oh
               + offs_d[None, :])
        if FUSE_MERGE:
            tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=row_ok[:, None])
        else:  # carrier parts into co_ptr / clse_ptr: the partials themselves, or (SIDE, v12m) a bf16 side buffer
            _write_direct_or_part(acc, l, m, row, row_ok, r_g, offs_d, out, direct_ptr, carrier_ptr, co_ptr, clse_ptr,
                                  ps_ptr, GROUP, HEAD_DIM, TOPK, SIDE)


@triton.jit
def _write_direct_or_part(acc, l, m, row, row_ok, r_g, offs_d, out, direct_ptr, carrier_ptr, po_ptr, plse_ptr,
                          ps_ptr, GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, TOPK: tl.constexpr, SIDE: tl.constexpr):
    # v8: tokens whose every entry was shared get their output here; the others hand a part to the merge: in
    # their carrier slot of the partials, or (SIDE) in the row's entry of a separate bf16 buffer [Hkv, T, G, d].
    direct = tl.load(direct_ptr + row, mask=row_ok, other=0) != 0
    carrier = tl.load(carrier_ptr + row, mask=row_ok, other=-1)
    tl.store(out, acc.to(out.dtype.element_ty), mask=(row_ok & direct)[:, None])
    part_ok = row_ok & (direct == 0) & (carrier >= 0)
    if SIDE:
        part = row * GROUP + r_g
    else:
        part = (row * TOPK + carrier) * GROUP + r_g
    store_part(po_ptr, ps_ptr, part, offs_d, acc, part_ok, HEAD_DIM)
    tl.store(plse_ptr + part, tl.where(l > 0, m + tl.log2(l), float("-inf")), mask=part_ok)


def persistent_programs(device: torch.device, work_items: int, per_sm: int = 0) -> int:
    """Programs for a persistent grid: ``per_sm`` per SM on a GPU, 3 under the CPU interpreter (so tests walk
    the strided loop), never more than there is work; ``per_sm=0``: one program per possible work item."""
    if per_sm <= 0:
        return max(1, work_items)
    if device.type == "cuda":
        return max(1, min(work_items, per_sm * torch.cuda.get_device_properties(device).multi_processor_count))
    return max(1, min(work_items, 3))


def tile_outer_attention(
    q: torch.Tensor,
    kv_cache: torch.Tensor,
    seq_lens: torch.Tensor,
    positions: torch.Tensor,
    requests: torch.Tensor,
    split: TileSplit,
    scale: float,
    out: torch.Tensor,
    partial_o: torch.Tensor,
    partial_lse: torch.Tensor,
    tile_t: int = DEFAULT_TILE_T,
    num_warps: int | None = None,
    num_stages: int = 3,
    keys: int = 64,
    use_clean: bool = True,
    per_sm: int = 0,
    warp_specialize: bool = False,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
    fuse_merge: bool = False,
    partial_scale: torch.Tensor | None = None,
    carrier_parts: CarrierParts | None = None,
):
    """Attention over each tile's shared blocks. ``fuse_merge`` (v9, opt-in): the KV-outer parts of the tile's
    rows (``split.rest``; ``partial_o`` / ``partial_lse`` [Hkv, T, top_k, G, d] / [Hkv, T, top_k, G], already
    written) are merged on chip and every row of ``split.owned`` is written to ``out``. Without it (v8): into
    ``out`` for ``split.direct`` rows, else into the carrier slot of the partials, for the merge kernel.
    ``use_clean=False`` masks every block (the v7 loop; for measurements); ``per_sm``: persistent programs per SM
    (0: one program per tile); ``warp_specialize``: Triton's automatic warp specialisation of the loops;
    ``k_scale`` / ``v_scale``: per-tensor scales of an fp8 cache; ``partial_scale``: int8 partials' row scales;
    ``carrier_parts`` (v12m, unfused only): carrier parts go there in bf16 instead of into the partials' carrier
    slot (with int8 partials the tile-outer epilogue then keeps its bf16 store). Returns Triton's launch handle
    (registers, spills and shared memory of the compiled kernel, for the benchmark), None if nothing ran."""
    num_tokens, num_heads, head_dim = q.shape
    num_kv_heads = kv_cache.shape[1]
    group = num_heads // num_kv_heads
    num_tiles = split.union_size.shape[1]
    if num_tiles == 0:
        return None
    if kv_cache.shape[2] != BLOCK_SIZE:
        raise ValueError(f"kv_cache pages must hold {BLOCK_SIZE} tokens")
    grid = (persistent_programs(q.device, num_tiles * num_kv_heads, per_sm),)
    return _tile_outer_kernel[grid](
        q, kv_cache, split.union, split.pages, split.union_size, split.clean, split.tokmask, split.carrier,
        split.direct.view(torch.int8), split.work, split.num_work, split.tile_first, seq_lens, positions, requests,
        split.rest, out,
        partial_o, partial_lse, partial_scale if partial_scale is not None else partial_lse,
        *(carrier_parts[1:] if carrier_parts is not None else (partial_o, partial_lse)),
        num_tokens, num_tiles, scale * k_scale * LOG2E, float(v_scale),
        q.stride(0), q.stride(1),
        kv_cache.stride(0), kv_cache.stride(1), kv_cache.stride(2),
        out.stride(0), out.stride(1),
        GROUP=group, GROUP_PAD=triton.next_power_of_2(group), HEAD_DIM=head_dim, TILE_T=tile_t,
        TOPK=split.rest.shape[2], MAX_UNION=split.union.shape[2], KEYS=keys, BLOCK=BLOCK_SIZE, USE_CLEAN=use_clean,
        WARP_SPEC=warp_specialize, SCALE_V=v_scale != 1.0, FUSE_MERGE=fuse_merge, SIDE=carrier_parts is not None,
        num_stages=num_stages,
        num_warps=num_warps or 4,  # H200 128K sweep: 4 warps x 64-key pieces 24.3 ms, 8 x 128 keys 26.6 ms
    )
