"""Shared pieces of the MSA attention kernels: token positions on the device, and the partial-output merge.

Partials are laid out [num_kv_heads, num_tokens, num_parts, group, head_dim] (output) and
[num_kv_heads, num_tokens, num_parts, group] (log2-sum-exp), so the parts of one (token, KV head) are contiguous.
Prefill writes one part per selection slot (KV-outer); decode one part per split-K chunk.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from kernels.msa.workspace import PrefillWorkspace, empty

LOG2E = math.log2(math.e)
"""1 / ln(2): the kernels take softmax in base 2 (exp2), so scores are scaled by sm_scale * log2(e)."""
_MAGIC: tl.constexpr = tl.constexpr(12582912.0)
"""1.5 * 2^23: a float in [2^23, 2^24) has unit spacing, so x + _MAGIC rounds x (|x| < 2^22) to an integer held in the
low mantissa bits (int8 partials, ``store_part`` / ``weighted_part``)."""
_MAGIC_BITS: tl.constexpr = tl.constexpr(0x4B400000)
"""The bits of _MAGIC (low byte zero)."""


def device_positions(query_start_loc: torch.Tensor, seq_lens: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """int32 absolute position of each query token (bottom-right aligned), computed without a host sync."""
    qsl = query_start_loc.to(torch.int64)
    q_lens = qsl[1:] - qsl[:-1]
    req = torch.repeat_interleave(torch.arange(q_lens.numel(), device=qsl.device), q_lens, output_size=num_tokens)
    offset = torch.arange(num_tokens, device=qsl.device) - qsl[:-1][req]
    return ((seq_lens.to(torch.int64) - q_lens)[req] + offset).to(torch.int32)


def device_requests(query_start_loc: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """int64 request id of each query token."""
    qsl = query_start_loc.to(torch.int64)
    q_lens = qsl[1:] - qsl[:-1]
    return torch.repeat_interleave(torch.arange(q_lens.numel(), device=qsl.device), q_lens, output_size=num_tokens)


@triton.jit
def store_part(po_ptr, ps_ptr, part, offs_d, o, mask, HEAD_DIM: tl.constexpr):
    """Store partial outputs ``o`` [rows, d] (fp32) as rows ``part`` of the partial buffer, in its dtype: int8 with a
    per-row absmax scale (into ``ps_ptr``; ~0.4 % rms error per element), else a plain cast (bf16: ~0.2 %). NOTES.md
    v9 / v10t have the measured output errors (fp8 e4m3 partials, 2.7e-2 at M3 shapes, were removed in v10t)."""
    ptrs = po_ptr + part[:, None] * HEAD_DIM + offs_d[None, :]
    if po_ptr.dtype.element_ty == tl.int8:
        amax = tl.max(tl.abs(o), axis=1)
        # Round to an integer in [-127, 127] without a float->int conversion (those issue at 1/8 of the FP32 rate:
        # v10t: 64 per thread per tile made int8 partials slower than fp8 ones): adding 1.5 * 2^23 leaves
        # round-to-nearest(y) in the float's low mantissa bits, whose low byte is the two's-complement int8.
        y = o * tl.where(amax > 0, 127.0 / amax, 0.0)[:, None]
        tl.store(ptrs, (y + _MAGIC).to(tl.int32, bitcast=True).to(tl.int8), mask=mask[:, None])
        tl.store(ps_ptr + part, amax / 127.0, mask=mask)
    else:
        tl.store(ptrs, o.to(po_ptr.dtype.element_ty), mask=mask[:, None])


@triton.jit
def weighted_part(po_ptr, ps_ptr, part, w, offs_d, mask, HEAD_DIM: tl.constexpr, EVICT: tl.constexpr):
    """``w[:, None]`` times rows ``part`` of the partial buffer as fp32, undoing ``store_part``'s int8 scale inside the
    row's weight (v19c: one multiply per row instead of one per element, ~1 of the int8 merge's ~7 instructions per
    element); rows masked or of weight 0 load no bytes and give 0, whatever their buffer holds. ``EVICT``: the loads'
    L2 eviction policy ("evict_first" where the part is read once, as in the merge; "" otherwise)."""
    ptrs = po_ptr + part[:, None] * HEAD_DIM + offs_d[None, :]
    load = mask & (w > 0)
    if po_ptr.dtype.element_ty == tl.int8:
        raw = tl.load(ptrs, mask=load[:, None], other=0, eviction_policy=EVICT)
        # int8 -> fp32 without an int->float conversion (1/8 rate; 16 per thread per part in the merge): the
        # zero-extended byte with its sign bit flipped is x + 128; placed in the mantissa of 1.5 * 2^23 (OR), the
        # float is 1.5 * 2^23 + 128 + x, so one subtraction gives x exactly.
        u = raw.to(tl.uint8, bitcast=True).to(tl.int32)
        x = ((u ^ 0x80) | _MAGIC_BITS).to(tl.float32, bitcast=True) - (_MAGIC + 128.0)
        return x * (w * tl.load(ps_ptr + part, mask=load, other=0.0))[:, None]
    return tl.load(ptrs, mask=load[:, None], other=0.0, eviction_policy=EVICT).to(tl.float32) * w[:, None]


class CarrierParts(NamedTuple):
    """v12m: the tile-outer step's carrier parts in bf16, one per (KV head, token), beside int8 KV-outer partials,
    so the tile-outer kernels keep their bf16 epilogue (the int8 store there cost the Triton kernel spills, NOTES
    v10t). The merge folds the part of a row whose ``slot`` >= 0 in with the row's KV-outer parts."""

    slot: torch.Tensor
    """[Hkv, T] int32: >= 0 where the tile-outer kernel wrote a part for the row (``TileSplit.carrier``)"""
    o: torch.Tensor
    """[Hkv, T, G, d] bf16 (q's dtype): the normalised tile-outer output of the row"""
    lse: torch.Tensor
    """[Hkv, T, G] fp32: its log2-sum-exp"""

    @classmethod
    def empty(cls, slot: torch.Tensor, group: int, head_dim: int, dtype: torch.dtype,
              workspace: PrefillWorkspace | None = None) -> CarrierParts:
        """Uninitialised parts for ``slot``'s rows (from ``workspace`` when given, v14u)."""
        num_kv_heads, num_tokens = slot.shape
        return cls(slot, empty(workspace, "carrier_o", (num_kv_heads, num_tokens, group, head_dim), dtype, slot.device),
                   empty(workspace, "carrier_lse", (num_kv_heads, num_tokens, group), torch.float32, slot.device))


@triton.jit
def _part_lse(plse_ptr, sel_ptr, lse_row, sel_row, k, row_ok, GROUP: tl.constexpr, HAS_SEL: tl.constexpr):
    """log2-sum-exp [rows] of part ``k``; -inf where absent (the part of a -1 selection entry was never written)."""
    lse = tl.load(plse_ptr + lse_row + k * GROUP, mask=row_ok, other=float("-inf"))
    if HAS_SEL:
        blk = tl.load(sel_ptr + sel_row + k, mask=row_ok, other=-1)
        lse = tl.where(blk >= 0, lse, float("-inf"))
    return lse


@triton.jit
def _merge_rows(
    po_ptr, plse_ptr, ps_ptr, sel_ptr, out_ptr, cslot_ptr, co_ptr, clse_ptr, t, g, h, row_ok,
    num_tokens, stride_sh, stride_st, stride_ot, stride_oh,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, NUM_PARTS: tl.constexpr, ROWS: tl.constexpr,
    HAS_SEL: tl.constexpr, HAS_CARRIER: tl.constexpr,
):
    """Merge ``ROWS`` rows (tokens ``t``, query heads ``g`` of KV head ``h``; ``row_ok`` masks the rest). v13p: every
    part's LSE first (the rows' max), then one unrolled pass of single-part loads whose weights are already known, so
    all the parts' bytes can be in flight together; v6-v12 ran an online softmax where each part's load waited on its
    own LSE -> weight chain (H200, 128K: 82 % of the copy-rate floor with bf16 parts, 60 % with int8; this: 100 % /
    73 %, NOTES v13p)."""
    offs_d = tl.arange(0, HEAD_DIM)
    ht = h.to(tl.int64) * num_tokens + t
    lse_row = ht * NUM_PARTS * GROUP + g  # the row's LSE of part 0; part k's is k * GROUP further (and its rows)
    sel_row = h * stride_sh + t.to(tl.int64) * stride_st
    m = tl.full((ROWS,), float("-inf"), tl.float32)
    if HAS_CARRIER:  # v12m: the row's tile-outer part, from its bf16 side buffer (int8 KV-outer parts)
        side = ht * GROUP + g
        has = row_ok & (tl.load(cslot_ptr + ht, mask=row_ok, other=-1) >= 0)
        c_lse = tl.load(clse_ptr + side, mask=has, other=float("-inf"))
        m = c_lse
    for k in tl.static_range(NUM_PARTS):
        m = tl.maximum(m, _part_lse(plse_ptr, sel_ptr, lse_row, sel_row, k, row_ok, GROUP, HAS_SEL))
    m = tl.where(m == float("-inf"), 0.0, m)  # a row without parts: every weight 0, the output 0
    denom = tl.zeros((ROWS,), tl.float32)
    acc = tl.zeros((ROWS, HEAD_DIM), tl.float32)
    if HAS_CARRIER:
        w = tl.exp2(c_lse - m)
        denom += w
        acc += weighted_part(co_ptr, ps_ptr, side, w, offs_d, has, HEAD_DIM, "evict_first")
    for k in tl.static_range(NUM_PARTS):
        # absent parts (weight 0) load no bytes and add 0, whatever garbage (NaN) their buffer holds
        w = tl.exp2(_part_lse(plse_ptr, sel_ptr, lse_row, sel_row, k, row_ok, GROUP, HAS_SEL) - m)
        denom += w
        acc += weighted_part(po_ptr, ps_ptr, lse_row + k * GROUP, w, offs_d, row_ok, HEAD_DIM, "evict_first")
    acc = acc / tl.where(denom > 0, denom, 1.0)[:, None]
    out = out_ptr + t.to(tl.int64)[:, None] * stride_ot + (h * GROUP + g)[:, None] * stride_oh + offs_d[None, :]
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=row_ok[:, None])


@triton.jit
def _merge_kernel(
    po_ptr, plse_ptr, ps_ptr, sel_ptr, skip_ptr, out_ptr, cslot_ptr, co_ptr, clse_ptr,
    num_tokens,
    stride_sh, stride_st,
    stride_ot, stride_oh,
    GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, HEAD_DIM: tl.constexpr, NUM_PARTS: tl.constexpr,
    TILE_T: tl.constexpr, SPAN: tl.constexpr, HAS_SEL: tl.constexpr, HAS_SKIP: tl.constexpr,
    HAS_CARRIER: tl.constexpr,
):
    # A program merges SPAN tiles of TILE_T tokens x GROUP_PAD heads of one KV head, one tile after the other. With
    # `skip`, one load of the span's flags first: a span whose rows another kernel (tile-outer prefill) owns exits
    # there (v16: at f >= 0.9 every row is owned, and one program per 16-row tile cost 0.4 ms of launches at 128K).
    h = tl.program_id(1)
    t0 = tl.program_id(0) * (SPAN * TILE_T)
    if HAS_SKIP:
        span_t = t0 + tl.arange(0, SPAN * TILE_T)
        owned = tl.load(skip_ptr + h * num_tokens + span_t, mask=span_t < num_tokens, other=1)
        if tl.min(owned, axis=0) != 0:  # 16 masked passes cost 5.6 ms at 128K (NOTES v7)
            return
    offs_r = tl.arange(0, TILE_T * GROUP_PAD)
    g = offs_r % GROUP_PAD
    for s in range(SPAN):
        t = t0 + s * TILE_T + offs_r // GROUP_PAD
        row_ok = (t < num_tokens) & (g < GROUP)
        any_row = True
        if HAS_SKIP:  # rows neither read nor written here
            row_ok = row_ok & (tl.load(skip_ptr + h * num_tokens + t, mask=row_ok, other=1) == 0)
            any_row = tl.max(row_ok.to(tl.int32), axis=0) != 0
        if any_row:
            _merge_rows(po_ptr, plse_ptr, ps_ptr, sel_ptr, out_ptr, cslot_ptr, co_ptr, clse_ptr, t, g, h, row_ok,
                        num_tokens, stride_sh, stride_st, stride_ot, stride_oh, GROUP, HEAD_DIM, NUM_PARTS,
                        TILE_T * GROUP_PAD, HAS_SEL, HAS_CARRIER)


def merge_partials(
    partial_o: torch.Tensor,
    partial_lse: torch.Tensor,
    out: torch.Tensor,
    selection: torch.Tensor | None,
    rows: int | None = None,
    skip: torch.Tensor | None = None,
    partial_scale: torch.Tensor | None = None,
    carrier: CarrierParts | None = None,
    span: int | None = None,
) -> None:
    """out[t, h*G + g] = softmax-weighted sum over parts; ``selection`` (if given) marks which parts exist.

    ``skip`` [kv_heads, tokens] bool: (token, KV head) rows to leave untouched (written by another kernel).
    ``partial_scale``: the per-row scales of int8 partials (``store_part``).
    ``carrier``: one more part per row kept apart (bf16 tile-outer parts beside int8 partials, v12m).
    ``span``: row tiles per program (default 8 with ``skip`` on the GPU, else 1; tests set it to cover both).
    """
    num_kv_heads, num_tokens, num_parts, group, head_dim = partial_o.shape
    if num_tokens == 0:
        return
    sel = selection if selection is not None else partial_lse  # unused pointer when HAS_SEL is False
    group_pad = triton.next_power_of_2(group)
    # 16 rows on the GPU (H100 sweep: 16 < 32 < 128 rows by ~5%); under the CPU interpreter the cost is per op,
    # so go wide.
    tile_t = max(1, (rows or (16 if partial_o.is_cuda else 512)) // group_pad)
    # with `skip`, SPAN tiles per program (one flags check for all of them; CPU: the interpreter's cost is per op)
    span = span or (8 if skip is not None and partial_o.is_cuda else 1)
    if span & (span - 1) or tile_t & (tile_t - 1):
        raise ValueError(f"span ({span}) and rows per tile ({tile_t} tokens) must be powers of two")
    scales = partial_scale if partial_scale is not None else partial_lse  # unused pointer unless int8 partials
    side = carrier if carrier is not None else (partial_lse, partial_o, partial_lse)  # unused pointers without one
    _merge_kernel[(triton.cdiv(num_tokens, tile_t * span), num_kv_heads)](
        partial_o, partial_lse, scales, sel, skip.view(torch.uint8) if skip is not None else sel, out, *side,
        num_tokens,
        sel.stride(0), sel.stride(1),
        out.stride(0), out.stride(1),
        GROUP=group, GROUP_PAD=group_pad, HEAD_DIM=head_dim, NUM_PARTS=num_parts,
        TILE_T=tile_t, SPAN=span, HAS_SEL=selection is not None, HAS_SKIP=skip is not None,
        HAS_CARRIER=carrier is not None,
        num_warps=4,
    )
