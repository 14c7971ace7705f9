"""Triton MSA decode: split-K over the selected pages, then the shared merge.

Decode is memory-bound: each (query token, KV head) reads its 16 selected pages (16 x 128 x 2 x d x 2 B = 1 MiB
at d = 128) once. The grid is (tokens x splits, kv_heads); each program streams TOPK / splits pages with a
software-pipelined loop (the next pages' loads are in flight while the current one is in the MMAs), keeps an
online softmax over its pages, and writes one partial (fp32) per split. The split count is the smallest giving
>= 256 programs (H100 sweeps: fewer, longer programs beat more splits; B=64 -> 1 split, B=16 -> 4). No
host-side tensor ops, so the launch can be captured in a CUDA graph. Several queries per request (1 + MTP
drafts) are just more tokens: each has its own selection and causal position (bottom-right aligned).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.msa.merge import LOG2E, merge_partials
from kernels.msa.prefill import _check
from kernels.msa.reference import MSAShapeError


@triton.jit
def _split_k_kernel(
    q_ptr, kv_ptr, sel_ptr, bt_ptr, seq_lens_ptr, po_ptr, plse_ptr,
    num_tokens, decode_query_len, sm_scale_log2, v_scale,
    stride_qt, stride_qh,
    stride_kvp, stride_kvh, stride_kvt,
    stride_sh, stride_st,
    stride_btr,
    GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, HEAD_DIM: tl.constexpr, TOPK: tl.constexpr,
    NUM_SPLITS: tl.constexpr, NUM_STAGES: tl.constexpr, SCALE_V: tl.constexpr,
):
    PER_SPLIT: tl.constexpr = TOPK // NUM_SPLITS
    t = tl.program_id(0) % num_tokens
    c = tl.program_id(0) // num_tokens
    h = tl.program_id(1)
    req = t // decode_query_len  # decode batches are request-major, decode_query_len queries each
    p_t = tl.load(seq_lens_ptr + req) - decode_query_len + t % decode_query_len
    offs_g = tl.arange(0, GROUP_PAD)
    offs_d = tl.arange(0, HEAD_DIM)
    offs_j = tl.arange(0, 128)
    g_ok = offs_g < GROUP
    q = tl.load(q_ptr + t.to(tl.int64) * stride_qt + (h * GROUP + offs_g)[:, None] * stride_qh + offs_d[None, :],
                mask=g_ok[:, None], other=0.0)
    m = tl.full((GROUP_PAD,), float("-inf"), tl.float32)
    l = tl.zeros((GROUP_PAD,), tl.float32)
    acc = tl.zeros((GROUP_PAD, HEAD_DIM), tl.float32)
    sel_row = sel_ptr + h.to(tl.int64) * stride_sh + t.to(tl.int64) * stride_st + c * PER_SPLIT
    bt_row = bt_ptr + req * stride_btr
    for k in tl.range(0, PER_SPLIT, num_stages=NUM_STAGES):
        blk = tl.load(sel_row + k)
        ok = blk >= 0
        page = tl.load(bt_row + tl.where(ok, blk, 0)).to(tl.int64)
        kpos = blk * 128 + offs_j
        key_ok = (kpos >= 0) & (kpos <= p_t)  # blk == -1 gives negative positions
        base = kv_ptr + page * stride_kvp + h * stride_kvh
        # an fp8 cache is widened to q's dtype (exact); its K scale is folded into sm_scale_log2
        k_t = tl.load(base + offs_j[None, :] * stride_kvt + offs_d[:, None], mask=key_ok[None, :],
                      other=0.0).to(q.dtype)
        v = tl.load(base + offs_j[:, None] * stride_kvt + HEAD_DIM + offs_d[None, :], mask=key_ok[:, None],
                    other=0.0).to(q.dtype)
        s = tl.where(key_ok[None, :], tl.dot(q, k_t) * sm_scale_log2, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_safe[:, None])
        alpha = tl.exp2(m - m_safe)
        l = l * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m = m_new
    lse = tl.where(l > 0, m + tl.log2(l), float("-inf"))
    acc = acc / tl.where(l > 0, l, 1.0)[:, None]
    if SCALE_V:  # fp8 cache: V's per-tensor scale (a runtime value: one compile for every layer), once on the output
        acc = acc * v_scale
    part = ((h.to(tl.int64) * num_tokens + t) * NUM_SPLITS + c) * GROUP + offs_g
    tl.store(po_ptr + part[:, None] * HEAD_DIM + offs_d[None, :], acc, mask=g_ok[:, None])
    tl.store(plse_ptr + part, lse, mask=g_ok)


def choose_splits(num_tokens: int, num_kv_heads: int, top_k: int, min_programs: int = 256) -> int:
    """Smallest power-of-two split (dividing top_k) giving >= min_programs programs (H100 sweeps, NOTES.md v2 and v5)."""
    splits = 1
    while splits < top_k and num_tokens * num_kv_heads * splits < min_programs:
        splits *= 2
    return splits


def sparse_decode_triton(
    q: torch.Tensor,
    kv_cache: torch.Tensor,
    selection: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    decode_query_len: int = 1,
    sm_scale: float | None = None,
    out: torch.Tensor | None = None,
    num_splits: int | None = None,
    num_stages: int = 3,
    num_warps: int = 4,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
) -> torch.Tensor:
    """Split-K sparse decode; ``decode_query_len`` queries per request (1 + MTP); returns out in q's dtype.

    ``kv_cache`` may be float8 e4m3 (``torch.float8_e4m3fn``, vLLM's layout) with per-tensor ``k_scale`` /
    ``v_scale`` (K = stored K * k_scale, V likewise; ``inputs.quantize_kv_fp8``)."""
    num_tokens, num_heads, head_dim = q.shape
    num_kv_heads = kv_cache.shape[1]
    _check(q, kv_cache, selection)
    top_k = selection.shape[2]
    group = num_heads // num_kv_heads
    scale = sm_scale if sm_scale is not None else head_dim ** -0.5
    if out is None:
        out = torch.empty_like(q)
    if num_tokens == 0:
        return out
    splits = num_splits or choose_splits(num_tokens, num_kv_heads, top_k)
    if top_k % splits:
        raise ValueError(f"num_splits {splits} must divide top_k {top_k}")
    if num_tokens != seq_lens.numel() * decode_query_len:
        raise MSAShapeError(f"decode expects {seq_lens.numel()} x {decode_query_len} query tokens, got {num_tokens}")
    partial_o = torch.empty((num_kv_heads, num_tokens, splits, group, head_dim), dtype=torch.float32, device=q.device)
    partial_lse = torch.empty((num_kv_heads, num_tokens, splits, group), dtype=torch.float32, device=q.device)
    _split_k_kernel[(num_tokens * splits, num_kv_heads)](
        q, kv_cache, selection, block_table, seq_lens, partial_o, partial_lse,
        num_tokens, decode_query_len, scale * k_scale * LOG2E, float(v_scale),
        q.stride(0), q.stride(1),
        kv_cache.stride(0), kv_cache.stride(1), kv_cache.stride(2),
        selection.stride(0), selection.stride(1),
        block_table.stride(0),
        GROUP=group, GROUP_PAD=max(16, triton.next_power_of_2(group)), HEAD_DIM=head_dim, TOPK=top_k,
        NUM_SPLITS=splits, NUM_STAGES=num_stages, SCALE_V=v_scale != 1.0,
        num_warps=num_warps,
    )
    merge_partials(partial_o, partial_lse, out, None)
    return out
