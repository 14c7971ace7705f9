"""Triton MSA indexer: block-max index scores fused with a running top-k, one pass over the index keys.

A program owns a tile of BLOCK_T consecutive query tokens of one request and ALL index heads (the index key
is one shared head, so the 4 heads share every K load: rows = BLOCK_T x heads). It streams the visible
index-key pages once; for each page it computes the [rows, 128] scores on the tensor cores, takes the max,
and inserts the block into a per-row running top-k held in registers. Scores never touch memory.

Rank: score descending, equal scores -> lower block id; forced blocks (init and local) get +inf as score. Running
state (v15x): fp32 scores + int32 ids per slot, insert iff s > the kept minimum (exact: blocks arrive by ascending
id), the victim an empty slot else the highest id at the minimum (v14 kept int64 keys and took their min per page:
the same selections, 5-7 % slower; `kernels/bench/indexer_topk_bench.py --baseline` compares against such a
checkout). The output is sorted by the int64 key (order-preserving bits of the score + 2^31) << 31 | (2^31 - 1 -
block). Selection semantics: see reference.select_blocks (local_blocks >= 1 here).

FP8 (v13r), as vLLM's `indexer_kv_dtype="fp8"` serves it: the index-key cache is float8_e4m3fn (no scale) and the
fused q/k-norm + RoPE kernel emits index_q in e4m3 too. Both e4m3 -> a native FP8 MMA (wgmma e4m3 x e4m3, fp32
accumulator: half the bf16 MMA time on Hopper, half the key bytes); one e4m3 operand -> it is widened to the
other operand's dtype (there is no mixed-dtype MMA), vLLM's rule.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.msa.reference import BLOCK_SIZE, TOP_K, MSAShapeError

INDEX_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float8_e4m3fn)
"""dtypes index_q and index_k_cache may have; only float8_e4m3fn may differ from the other operand's dtype."""


@triton.jit
def _block_key(score, blk):
    """int64 ranking key of a block score (order-preserving float -> int, then id tiebreak)."""
    bits = score.to(tl.int32, bitcast=True)
    ordered = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # flips the magnitude bits of negatives: int order == float order
    return ((ordered.to(tl.int64) + 2147483648) << 31) | (2147483647 - blk)


@triton.jit
def _index_topk_kernel(
    iq_ptr, ik_ptr, sel_ptr, bt_ptr, qsl_ptr, seq_lens_ptr,
    stride_iqt, stride_iqh,
    stride_ikp, stride_ikt,
    stride_sh, stride_st,
    stride_btr,
    n_tiles,
    NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_T: tl.constexpr, TOPK: tl.constexpr,
    INIT_BLOCKS: tl.constexpr, LOCAL_BLOCKS: tl.constexpr, NUM_STAGES: tl.constexpr, NO_UPDATE: tl.constexpr = False,
):
    ROWS: tl.constexpr = BLOCK_T * NUM_HEADS
    # Longest tiles (latest positions) first: the causal work grows with the tile index.
    tile = n_tiles - 1 - tl.program_id(0)
    req = tl.program_id(1)
    q_start = tl.load(qsl_ptr + req)
    q_len = tl.load(qsl_ptr + req + 1) - q_start
    if tile * BLOCK_T >= q_len:
        return
    seq_len = tl.load(seq_lens_ptr + req)
    prefix = seq_len - q_len

    offs_r = tl.arange(0, ROWS)
    tok = tile * BLOCK_T + offs_r // NUM_HEADS
    head = offs_r % NUM_HEADS
    row_ok = tok < q_len
    pos = prefix + tok
    nb_row = pos // 128 + 1  # visible blocks of each row
    offs_d = tl.arange(0, HEAD_DIM)
    offs_k = tl.arange(0, 128)
    q = tl.load(iq_ptr + (q_start + tok).to(tl.int64)[:, None] * stride_iqt + head[:, None] * stride_iqh
                + offs_d[None, :], mask=row_ok[:, None], other=0.0)
    if q.dtype.is_fp8() and q.dtype != ik_ptr.dtype.element_ty:  # no mixed-dtype MMA: widen the e4m3 side, once
        q = q.to(ik_ptr.dtype.element_ty)

    offs_s = tl.arange(0, TOPK)
    last_pos = prefix + tl.minimum(q_len, (tile + 1) * BLOCK_T) - 1
    n_blocks = last_pos // 128 + 1
    bt_row = bt_ptr + req.to(tl.int64) * stride_btr
    EMPTY: tl.constexpr = 1 << 30  # ids of empty slots: EMPTY + slot (distinct, above every block id)
    scores = tl.full((ROWS, TOPK), float("-inf"), dtype=tl.float32)
    ids = tl.zeros((ROWS, TOPK), dtype=tl.int32) + EMPTY + offs_s[None, :]
    for blk in tl.range(0, n_blocks, num_stages=NUM_STAGES):
        page = tl.load(bt_row + blk).to(tl.int64)
        # [D, 128], d contiguous: the K-major B operand FP8 wgmma needs (no transpose through shared memory)
        k = tl.load(ik_ptr + page * stride_ikp + offs_k[None, :] * stride_ikt + offs_d[:, None])
        if k.dtype != q.dtype:  # e4m3 cache with a wider q: widen the page
            k = k.to(q.dtype)
        s = tl.max(tl.dot(q, k, out_dtype=tl.float32), axis=1)
        forced = (blk < INIT_BLOCKS) | (blk >= nb_row - LOCAL_BLOCKS)
        s = tl.where(forced, float("inf"), s)
        if NO_UPDATE:  # timing diagnostic: no top-k update (wrong selections by design; the bookkeeping's cost)
            scores = tl.maximum(scores, s[:, None])
        else:
            # v15x: fp32 scores + int32 ids. Blocks arrive by ascending id, so a block whose score EQUALS the kept
            # minimum ranks below it (equal scores -> lower id): `s > thr` on fp32 is exactly v14's key test. The
            # victim is the lowest-ranked kept slot: an empty one if any (score -inf, id >= EMPTY), else the highest
            # id among the slots at the minimum score. thr and victim depend on the kept set only: computed from it
            # at the top of the page they overlap the row max, and the path from the MMA to the update is a compare
            # and two selects.
            thr = tl.min(scores, axis=1)
            victim = tl.max(tl.where(scores == thr[:, None], ids, -1), axis=1)
            insert = row_ok & (blk < nb_row) & ((s > thr) | (victim >= EMPTY))
            hit = (ids == victim[:, None]) & insert[:, None]
            scores = tl.where(hit, s[:, None], scores)
            ids = tl.where(hit, blk, ids)
    if NO_UPDATE:
        ids = tl.zeros((ROWS, TOPK), dtype=tl.int32) + offs_s[None, :]
    # Rank once: + 0.0 turns -0.0 into +0.0, equal in the order as in the compares above (and in the reference);
    # empty slots get distinct negative keys, i.e. -1 after the decode below.
    keys = tl.where(ids < EMPTY, _block_key(scores + 0.0, ids.to(tl.int64)), -1 - offs_s[None, :].to(tl.int64))

    keys = tl.sort(keys, dim=1, descending=True)
    ids = tl.where(keys >= 0, 2147483647 - (keys & 2147483647), -1).to(tl.int32)
    out = sel_ptr + head[:, None].to(tl.int64) * stride_sh + (q_start + tok).to(tl.int64)[:, None] * stride_st \
        + offs_s[None, :]
    tl.store(out, ids, mask=row_ok[:, None])


def msa_index_topk_triton(
    index_q: torch.Tensor,
    index_k_cache: torch.Tensor,
    block_table: torch.Tensor,
    query_start_loc: torch.Tensor,
    seq_lens: torch.Tensor,
    top_k: int = TOP_K,
    init_blocks: int = 0,
    local_blocks: int = 1,
    max_query_len: int | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Selection [num_kv_heads, num_tokens, top_k] int32 (valid ids by descending rank, then -1).

    ``max_query_len`` avoids a device sync when given (as vLLM's metadata has it on the host).
    """
    num_tokens, num_heads, head_dim = index_q.shape
    _check(index_q, index_k_cache, top_k, local_blocks)
    if out is None:
        out = torch.empty((num_heads, num_tokens, top_k), dtype=torch.int32, device=index_q.device)
    if num_tokens == 0:
        return out
    if max_query_len is None:
        max_query_len = int((query_start_loc[1:] - query_start_loc[:-1]).max())
    rows, stages, warps = _config(index_q.dtype, index_k_cache.dtype)
    return _launch(index_q, index_k_cache, block_table, query_start_loc, seq_lens, out, top_k, init_blocks,
                   local_blocks, max_query_len, rows, stages, warps)


FP8_CONFIG = (128, 3, 8)
"""(MMA rows per program, pipeline stages, warps) when index_q and the cache are both e4m3 (v13r)."""
WIDE_CONFIG = (128, 3, 8)
"""The same for bf16 / fp16 / fp32 MMAs (v4)."""


def _config(q_dtype: torch.dtype, k_dtype: torch.dtype) -> tuple[int, int, int]:
    return FP8_CONFIG if q_dtype == k_dtype == torch.float8_e4m3fn else WIDE_CONFIG


def _launch(index_q: torch.Tensor, index_k_cache: torch.Tensor, block_table: torch.Tensor,
            query_start_loc: torch.Tensor, seq_lens: torch.Tensor, out: torch.Tensor, top_k: int, init_blocks: int,
            local_blocks: int, max_query_len: int, rows: int, stages: int, warps: int,
            no_update: bool = False) -> torch.Tensor:
    """One launch with an explicit tile shape (the benchmark's sweep calls this directly).

    ``no_update``: a timing diagnostic that skips the running top-k's update (wrong selections by design).
    """
    num_tokens, num_heads, head_dim = index_q.shape
    block_t = max(1, rows // num_heads)  # rows = tokens x index heads of one MMA tile
    n_tiles = triton.cdiv(max_query_len, block_t)
    grid = (n_tiles, seq_lens.numel())
    _index_topk_kernel[grid](
        index_q, index_k_cache, out, block_table, query_start_loc, seq_lens,
        index_q.stride(0), index_q.stride(1),
        index_k_cache.stride(0), index_k_cache.stride(1),
        out.stride(0), out.stride(1),
        block_table.stride(0),
        n_tiles,
        NUM_HEADS=num_heads, HEAD_DIM=head_dim, BLOCK_T=block_t, TOPK=top_k,
        INIT_BLOCKS=init_blocks, LOCAL_BLOCKS=local_blocks, NUM_STAGES=stages, NO_UPDATE=no_update,
        num_warps=warps,
    )
    return out


def _check(index_q: torch.Tensor, index_k_cache: torch.Tensor, top_k: int, local_blocks: int) -> None:
    problems = []
    if index_q.dim() != 3 or index_q.stride(2) != 1:
        problems.append(f"index_q must be [tokens, heads, head_dim] with unit last stride, got {tuple(index_q.shape)}")
    elif index_q.shape[1] & (index_q.shape[1] - 1) or index_q.shape[1] > 128:
        problems.append(f"index heads must be a power of two <= 128, got {index_q.shape[1]}")
    if index_k_cache.dim() != 3 or index_k_cache.shape[1] != BLOCK_SIZE or index_k_cache.stride(2) != 1:
        problems.append(f"index_k_cache must be [pages, {BLOCK_SIZE}, head_dim], got {tuple(index_k_cache.shape)}")
    elif index_q.dim() == 3 and index_k_cache.shape[2] != index_q.shape[2]:
        problems.append(f"head_dim mismatch: index_q {index_q.shape[2]}, index_k_cache {index_k_cache.shape[2]}")
    dtypes = (index_q.dtype, index_k_cache.dtype)
    if any(d not in INDEX_DTYPES for d in dtypes) or (dtypes[0] != dtypes[1] and torch.float8_e4m3fn not in dtypes):
        problems.append(f"index_q / index_k_cache dtypes {dtypes[0]} / {dtypes[1]} not supported: each one of "
                        "float32, bfloat16, float16, float8_e4m3fn, the same unless one is float8_e4m3fn")
    if top_k & (top_k - 1):
        problems.append(f"top_k must be a power of two, got {top_k}")
    if local_blocks < 1:
        problems.append("the Triton indexer needs local_blocks >= 1 (use the reference otherwise)")
    if problems:
        raise MSAShapeError("; ".join(problems))
