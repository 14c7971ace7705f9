"""PyTorch fp32 reference for MiniMax Sparse Attention (MSA), in vLLM's layouts.

Everything here is written for clarity, not speed: the sparse attention is computed as dense attention
under a block mask built from the selection, which is a different formulation from the kernels' gather,
so the two check each other. Shapes (M3: block = page = 128 tokens, head_dim 128, top-k 16):

- ``q``: [num_tokens, num_heads, head_dim]; ``index_q``: [num_tokens, num_kv_heads, head_dim]
- ``kv_cache``: [num_pages, num_kv_heads, 128, 2 * head_dim] (K = [..., :head_dim], V = [..., head_dim:])
- ``index_k_cache``: [num_pages, 128, head_dim] (one shared index-key head)
- ``block_table``: [num_requests, max_blocks] int32, logical block -> page
- ``query_start_loc``: [num_requests + 1] int32; ``seq_lens``: [num_requests] int32 (context + this chunk)
- ``selection``: [num_kv_heads, num_tokens, top_k] int32 logical block ids, valid entries first, -1 padding

Query tokens are bottom-right aligned: token i of a request with q_len queries sits at position
seq_len - q_len + i. Prefill, chunked prefill with context and decode with 1 + MTP queries are all that.
"""
from __future__ import annotations

import math

import torch

BLOCK_SIZE = 128
"""Tokens per sparse block; equal to vLLM's KV page size for M3."""
TOP_K = 16
"""Selected blocks per query token and KV head."""


class MSAShapeError(ValueError):
    """Inputs whose shapes or metadata do not fit the MSA layouts."""


def token_positions(query_start_loc: torch.Tensor, seq_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Request id and absolute position of every query token (bottom-right aligned)."""
    qsl = query_start_loc.to(torch.int64).cpu()
    lens = seq_lens.to(torch.int64).cpu()
    q_lens = qsl[1:] - qsl[:-1]
    if q_lens.numel() != lens.numel():
        raise MSAShapeError(f"query_start_loc has {q_lens.numel()} requests, seq_lens {lens.numel()}")
    if bool((q_lens < 0).any()) or bool((q_lens > lens).any()):
        raise MSAShapeError(f"each request needs 0 <= q_len <= seq_len; q_lens={q_lens.tolist()}, seq_lens={lens.tolist()}")
    req = torch.repeat_interleave(torch.arange(lens.numel()), q_lens)
    offset_in_req = torch.arange(int(qsl[-1])) - qsl[:-1][req]
    positions = (lens - q_lens)[req] + offset_in_req
    return req, positions


def decode_query_start_loc(num_requests: int, decode_query_len: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """query_start_loc of a decode batch with the same number of queries (1 + MTP drafts) per request."""
    return torch.arange(num_requests + 1, dtype=torch.int32, device=device) * decode_query_len


def _request_keys(cache: torch.Tensor, block_table: torch.Tensor, r: int, seq_len: int) -> torch.Tensor:
    """The request's tokens gathered from paged ``cache`` ([pages, 128, ...] -> [seq_len, ...])."""
    num_blocks = math.ceil(seq_len / BLOCK_SIZE)
    pages = block_table[r, :num_blocks].to(torch.int64).cpu()
    gathered = cache.index_select(0, pages.to(cache.device))
    if gathered.dim() == 4:  # KV cache [pages, kv_heads, 128, 2D]: put the token axis next to the page axis
        gathered = gathered.transpose(1, 2)
    return gathered.flatten(0, 1)[:seq_len]


def index_block_scores(
    index_q: torch.Tensor,
    index_k_cache: torch.Tensor,
    block_table: torch.Tensor,
    query_start_loc: torch.Tensor,
    seq_lens: torch.Tensor,
) -> torch.Tensor:
    """Block-max index scores [num_kv_heads, num_tokens, max_blocks] (fp32; -inf where not visible).

    s[t] = q_idx · k_idx[t] over visible keys t <= p; a block's score is the max over its visible keys.
    Any input dtype, float8_e4m3fn included (vLLM's fp8 index path): both sides are widened to fp32 first, which is
    exact, so the scores are those of the stored values.
    """
    num_tokens, num_heads, _ = index_q.shape
    req, pos = token_positions(query_start_loc, seq_lens)
    max_blocks = math.ceil(int(seq_lens.max()) / BLOCK_SIZE) if seq_lens.numel() else 0
    out = torch.full((num_heads, num_tokens, max_blocks), float("-inf"), dtype=torch.float32)
    qsl = query_start_loc.tolist()
    for r, seq_len in enumerate(seq_lens.tolist()):
        start, end = qsl[r], qsl[r + 1]
        if end == start:
            continue
        keys = _request_keys(index_k_cache, block_table, r, seq_len).float().cpu()  # [L, D]
        nb = math.ceil(seq_len / BLOCK_SIZE)
        padded = torch.full((nb * BLOCK_SIZE,), float("-inf"))
        for c0 in range(start, end, 256):  # chunks bound the [H, c, L] score tensor
            c1 = min(end, c0 + 256)
            s = torch.einsum("thd,ld->htl", index_q[c0:c1].float().cpu(), keys)
            visible = torch.arange(seq_len)[None, :] <= pos[c0:c1, None]
            s = s.masked_fill(~visible[None], float("-inf"))
            s = torch.cat([s, padded[: nb * BLOCK_SIZE - seq_len].expand(num_heads, c1 - c0, -1)], dim=-1)
            out[:, c0:c1, :nb] = s.view(num_heads, c1 - c0, nb, BLOCK_SIZE).amax(dim=-1)
    return out


def select_blocks(
    block_scores: torch.Tensor,
    query_start_loc: torch.Tensor,
    seq_lens: torch.Tensor,
    top_k: int = TOP_K,
    init_blocks: int = 0,
    local_blocks: int = 1,
) -> torch.Tensor:
    """Top-k selection [num_kv_heads, num_tokens, top_k] int32 from block scores, -1 padded.

    With nb = p // 128 + 1 visible blocks: all of them if nb <= top_k; otherwise the forced blocks (the first
    ``init_blocks`` and the last ``local_blocks`` visible ones) plus the best-scoring others (ties -> lower id).
    Order: forced blocks first (ascending), then by descending score; ``-1`` after the valid ids.
    """
    num_heads, num_tokens, max_blocks = block_scores.shape
    _, pos = token_positions(query_start_loc, seq_lens)
    out = torch.full((num_heads, num_tokens, top_k), -1, dtype=torch.int32)
    ids = torch.arange(max_blocks)
    for c0 in range(0, num_tokens, 1024):  # chunks bound the [H, c, max_blocks] key tensor
        nb = (pos[c0:c0 + 1024] // BLOCK_SIZE + 1)[:, None]  # visible blocks per token, [c, 1]
        visible = ids[None, :] < nb
        # Forced blocks outrank every score (when nb <= top_k every visible block is selected anyway).
        forced = visible & ((ids[None, :] < init_blocks) | (ids[None, :] >= nb - local_blocks) | (nb <= top_k))
        keys = block_scores[:, c0:c0 + 1024].float().cpu().masked_fill(~visible[None], float("-inf"))
        keys = keys.masked_fill(forced[None], float("inf"))
        order = torch.sort(-keys, dim=-1, stable=True).indices[..., :top_k]  # stable: ties -> lower block id
        order = order.masked_fill(order >= nb[None], -1)
        out[:, c0:c0 + 1024, : order.shape[-1]] = order.to(torch.int32)
    return out


def msa_index_topk(
    index_q: torch.Tensor,
    index_k_cache: torch.Tensor,
    block_table: torch.Tensor,
    query_start_loc: torch.Tensor,
    seq_lens: torch.Tensor,
    top_k: int = TOP_K,
    init_blocks: int = 0,
    local_blocks: int = 1,
) -> torch.Tensor:
    """The whole indexer: block-max scores then top-k. Returns the int32 selection (see ``select_blocks``)."""
    scores = index_block_scores(index_q, index_k_cache, block_table, query_start_loc, seq_lens)
    return select_blocks(scores, query_start_loc, seq_lens, top_k, init_blocks, local_blocks)


def sparse_attention(
    q: torch.Tensor,
    kv_cache: torch.Tensor,
    selection: torch.Tensor,
    block_table: torch.Tensor,
    query_start_loc: torch.Tensor,
    seq_lens: torch.Tensor,
    sm_scale: float | None = None,
) -> torch.Tensor:
    """Exact softmax attention over the selected blocks, causal; returns fp32 [num_tokens, num_heads, head_dim].

    Each query head h reads KV head h // (num_heads // num_kv_heads). A token with no visible selected key
    (only possible with a malformed selection) gets a zero output.
    """
    num_tokens, num_heads, head_dim = q.shape
    num_kv_heads = kv_cache.shape[1]
    _check_attention_shapes(q, kv_cache, selection)
    group = num_heads // num_kv_heads
    scale = sm_scale if sm_scale is not None else head_dim ** -0.5
    _, pos = token_positions(query_start_loc, seq_lens)
    out = torch.zeros((num_tokens, num_heads, head_dim), dtype=torch.float32)
    qsl = query_start_loc.tolist()
    sel = selection.to(torch.int64).cpu()
    for r, seq_len in enumerate(seq_lens.tolist()):
        start, end = qsl[r], qsl[r + 1]
        if end == start:
            continue
        kv = _request_keys(kv_cache, block_table, r, seq_len).float().cpu()  # [L, Hkv, 2D]
        key_block = torch.arange(seq_len) // BLOCK_SIZE
        nb = math.ceil(seq_len / BLOCK_SIZE)
        for c0 in range(start, end, 64):
            c1 = min(end, c0 + 64)
            causal = torch.arange(seq_len)[None, :] <= pos[c0:c1, None]  # [c, L]
            for h in range(num_kv_heads):
                chosen = torch.zeros((c1 - c0, nb + 1), dtype=torch.bool)
                s = sel[h, c0:c1].clamp(min=-1, max=nb)  # -1 and out-of-range ids land in a dropped column
                chosen.scatter_(1, torch.where(s < 0, nb, s), True)
                mask = chosen[:, key_block] & causal  # [c, L]
                qh = q[c0:c1, h * group:(h + 1) * group].float().cpu()  # [c, G, D]
                logits = torch.einsum("cgd,ld->cgl", qh, kv[:, h, :head_dim]) * scale
                logits = logits.masked_fill(~mask[:, None, :], float("-inf"))
                probs = torch.softmax(logits, dim=-1).nan_to_num(0.0)
                out[c0:c1, h * group:(h + 1) * group] = torch.einsum("cgl,ld->cgd", probs, kv[:, h, head_dim:])
    return out


def sparse_decode(
    q: torch.Tensor,
    kv_cache: torch.Tensor,
    selection: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    decode_query_len: int = 1,
    sm_scale: float | None = None,
) -> torch.Tensor:
    """Decode with ``decode_query_len`` (1 + MTP) queries per request; the last query sits at seq_len - 1."""
    qsl = decode_query_start_loc(seq_lens.numel(), decode_query_len)
    if q.shape[0] != int(qsl[-1]):
        raise MSAShapeError(f"decode expects {int(qsl[-1])} query tokens, got {q.shape[0]}")
    return sparse_attention(q, kv_cache, selection, block_table, qsl, seq_lens, sm_scale)


def _check_attention_shapes(q: torch.Tensor, kv_cache: torch.Tensor, selection: torch.Tensor) -> None:
    """Raise MSAShapeError with every mismatch found, not only the first."""
    problems = []
    if q.dim() != 3:
        problems.append(f"q must be [tokens, heads, head_dim], got {tuple(q.shape)}")
    if kv_cache.dim() != 4 or kv_cache.shape[2] != BLOCK_SIZE:
        problems.append(f"kv_cache must be [pages, kv_heads, {BLOCK_SIZE}, 2*head_dim], got {tuple(kv_cache.shape)}")
    elif q.dim() == 3 and kv_cache.shape[3] != 2 * q.shape[2]:
        problems.append(f"kv_cache last dim {kv_cache.shape[3]} != 2 * head_dim {2 * q.shape[2]}")
    if q.dim() == 3 and kv_cache.dim() == 4 and q.shape[1] % kv_cache.shape[1]:
        problems.append(f"num_heads {q.shape[1]} is not a multiple of num_kv_heads {kv_cache.shape[1]}")
    if selection.dim() != 3 or (q.dim() == 3 and kv_cache.dim() == 4
                                and tuple(selection.shape[:2]) != (kv_cache.shape[1], q.shape[0])):
        problems.append(f"selection must be [kv_heads, tokens, top_k], got {tuple(selection.shape)}")
    if problems:
        raise MSAShapeError("; ".join(problems))
