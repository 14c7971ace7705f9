"""The partial-output codecs (``merge.store_part`` / ``weighted_part``) against torch: int8 with a per-row absmax scale
must equal round-half-even(o / scale) exactly (v10t encodes and decodes it with float bit tricks instead of
float<->int conversions), bf16 a plain cast. CPU under TRITON_INTERPRET=1, or the GPU when present."""
from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():  # must be set before the kernels' @triton.jit run
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from kernels.msa.merge import store_part, weighted_part  # noqa: E402
from tests.kernels.msa.checks import DEVICE  # noqa: E402

ROWS, D = 16, 32
WEIGHTLESS: tl.constexpr = tl.constexpr(5)
"""The row read back with weight 0."""


@triton.jit
def _round_trip_kernel(o_ptr, po_ptr, ps_ptr, back_ptr, ROWS: tl.constexpr, D: tl.constexpr):
    offs_r = tl.arange(0, ROWS)
    offs_d = tl.arange(0, D)
    o = tl.load(o_ptr + offs_r[:, None] * D + offs_d[None, :])
    keep = offs_r != 3  # one masked row: neither written nor read
    store_part(po_ptr, ps_ptr, offs_r, offs_d, o, keep, D)
    w = tl.where(offs_r == WEIGHTLESS, 0.0, 1.0)  # a written row of weight 0 reads as zeros
    tl.store(back_ptr + offs_r[:, None] * D + offs_d[None, :],
             weighted_part(po_ptr, ps_ptr, offs_r, w, offs_d, keep, D, ""))


def _rows() -> torch.Tensor:
    """Random rows at several magnitudes, plus a zero row, a row of exact ties (k + 0.5 steps) and both extremes."""
    gen = torch.Generator().manual_seed(5)
    o = torch.randn(ROWS, D, generator=gen) * torch.logspace(-6, 2, ROWS)[:, None]
    o[0] = 0.0
    o[1] = torch.arange(D) - D / 2 + 0.5  # exact ties k + 0.5 (the row's scale is 1: amax = 127 below)
    o[1, 0] = 127.0
    o[2, :2] = torch.tensor([-1.0, 1.0])  # exactly -127 and 127 after scaling
    return o


@pytest.mark.parametrize("dtype", [torch.int8, torch.bfloat16])
def test_partial_codec_round_trip(dtype):
    o = _rows().to(DEVICE)
    po = torch.full((ROWS, D), 7, dtype=torch.int8, device=DEVICE).view(dtype) if dtype.itemsize == 1 else \
        torch.full((ROWS, D), 7.0, dtype=dtype, device=DEVICE)
    ps = torch.full((ROWS,), -1.0, device=DEVICE)
    back = torch.full((ROWS, D), float("nan"), device=DEVICE)
    _round_trip_kernel[(1,)](o, po, ps, back, ROWS=ROWS, D=D)
    keep = torch.arange(ROWS) != 3
    o, po, ps, back = o.cpu(), po.cpu(), ps.cpu(), back.cpu()
    assert torch.equal(back[3], torch.zeros(D)), "a masked row must read as zeros"
    assert torch.equal(back[5], torch.zeros(D)), "a row of weight 0 must read as zeros"
    read = keep & (torch.arange(ROWS) != 5)  # row 5 is written (checked through po) but read with weight 0
    if dtype == torch.int8:
        amax = o.abs().amax(1)
        scale = amax / 127.0
        want = torch.round(o / torch.where(amax > 0, scale, 1.0)[:, None]).to(torch.int8)  # half to even
        assert torch.equal(po[keep], want[keep])
        assert torch.equal(po[3], torch.full((D,), 7, dtype=torch.int8)) and float(ps[3]) == -1.0
        assert torch.allclose(ps[keep], scale[keep], rtol=1e-6, atol=0)
        assert torch.allclose(back[read], (want.float() * ps[:, None])[read], rtol=1e-6, atol=0)
        assert int(po[2, 0]) == -127 and int(po[2, 1]) == 127
        err = (back - o)[read].abs() / amax[read, None].clamp_min(1e-30)
        assert float(err.max()) <= 0.5 / 127 + 1e-6  # at most half a step of the row's scale
    else:  # a plain cast (the interpreter truncates where the GPU rounds to nearest: one bf16 step either way)
        assert bool(((po.float() - o).abs() <= o.abs() * 2.0 ** -7)[keep].all())
        assert torch.equal(back[read], po[read].float())


def _merge_reference(po: torch.Tensor, plse: torch.Tensor, present: torch.Tensor,
                     carrier: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """What ``merge_partials`` computes, in float64 on the CPU: per (KV head, token, head) the softmax-weighted sum
    of the present parts (decoded values ``po`` [Hkv, T, P, G, d], base-2 LSEs ``plse``), plus the carrier part
    where its slot is >= 0; rows with no part give zeros. Returns [T, Hkv * G, d]."""
    lse = torch.where(present[..., None], plse.double(), float("-inf"))
    o = torch.where(present[..., None, None], po.double(), 0.0)
    if carrier is not None:
        slot, c_o, c_lse = carrier
        has = (slot >= 0)[:, :, None, None]
        lse = torch.cat([lse, torch.where(has, c_lse.double()[:, :, None], float("-inf"))], 2)
        o = torch.cat([o, torch.where(has[..., None], c_o.double()[:, :, None], 0.0)], 2)
    m = lse.amax(2, keepdim=True)
    w = torch.exp2(lse - torch.where(m == float("-inf"), 0.0, m))
    out = (w[..., None] * o).sum(2) / w.sum(2).clamp_min(1e-300)[..., None]
    num_kv_heads, num_tokens, group, d = out.shape
    return out.permute(1, 0, 2, 3).reshape(num_tokens, num_kv_heads * group, d)


def _int8_parts(o: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``store_part``'s format built with torch: (int8 parts, per-row scales, the values they decode to)."""
    amax = o.abs().amax(-1)
    scale = amax / 127.0
    q = torch.round(o / torch.where(amax > 0, scale, 1.0)[..., None]).to(torch.int8)
    return q, scale, q.float() * scale[..., None]


@pytest.mark.parametrize("parts,rows,span", [("bf16", None, None), ("bf16", 12, None), ("int8", None, None),
                                             ("int8+carrier", 8, None), ("fp32, no selection", 4, None),
                                             ("bf16+skip", 8, None), ("bf16+skip", 8, 2), ("bf16+skip", 16, 4)])
def test_merge_partials_semantics(parts, rows, span):
    """v13p: the merge (all parts' LSEs first, then independent part loads) against its definition: -1 selection
    entries anywhere (parts never written: NaN garbage in their values and LSEs), rows with no part at all (zeros),
    a group that is not a power of two, tiles that end mid-row-set, ``skip`` rows left as they were (NaN poison),
    int8 parts with per-row scales, a bf16 carrier part beside them, and decode's form (fp32 parts, no selection).
    ``span`` (v16): several row tiles per program, a span owned whole (it exits at its flags) and a last span that
    ends past the tokens."""
    from kernels.msa.merge import CarrierParts, merge_partials

    gen = torch.Generator().manual_seed(16)
    hkv, t, p, g, d = 2, 37, 6 if parts.startswith("fp32") else 16, 6, D
    o = torch.randn(hkv, t, p, g, d, generator=gen)
    lse = torch.randn(hkv, t, p, g, generator=gen) * 4
    sel = torch.randint(0, 50, (hkv, t, p), generator=gen, dtype=torch.int32)
    sel[torch.rand(hkv, t, p, generator=gen) < 0.3] = -1  # holes anywhere, not only at the end
    sel[0, 5] = -1  # a row with no part at all
    sel[1, 36, :-1] = -1  # only the last slot present
    has_sel = not parts.startswith("fp32")
    present = sel >= 0 if has_sel else torch.ones(hkv, t, p, dtype=torch.bool)
    scale = None
    if parts.startswith("int8"):
        po, scale, values = _int8_parts(o)
        po[~present] = -128
        scale[~present] = float("nan")
    else:
        dtype = torch.float32 if parts.startswith("fp32") else torch.bfloat16
        po = torch.where(present[..., None, None], o, float("nan")).to(dtype)
        values = po.float()
    plse = torch.where(present[..., None], lse, float("nan"))
    carrier = skip = None
    if parts.endswith("carrier"):
        slot = torch.randint(-1, 3, (hkv, t), generator=gen, dtype=torch.int32)
        slot[0, 5] = -1  # still a row with nothing
        c_o = torch.randn(hkv, t, g, d, generator=gen).to(torch.bfloat16)
        c_lse = torch.where(slot[..., None] >= 0, torch.randn(hkv, t, g, generator=gen) * 4, float("nan"))
        c_o[slot < 0] = float("nan")
        carrier = CarrierParts(slot.to(DEVICE), c_o.to(DEVICE), c_lse.to(DEVICE))
    if parts.endswith("skip"):
        skip = torch.rand(hkv, t, generator=gen) < 0.4
        skip[0, 5] = False
        skip[1, :24] = True  # whole spans owned (tokens 0-23: spans of 2 or 8 tokens)
    out = torch.full((t, hkv * g, d), float("nan"), dtype=torch.bfloat16, device=DEVICE)
    merge_partials(po.to(DEVICE), plse.to(DEVICE), out, sel.to(DEVICE) if has_sel else None, rows=rows,
                   skip=skip.to(DEVICE) if skip is not None else None,
                   partial_scale=scale.to(DEVICE) if scale is not None else None, carrier=carrier, span=span)
    want = _merge_reference(values, lse, present,
                            (carrier.slot.cpu(), carrier.o.float().cpu(), carrier.lse.cpu()) if carrier else None)
    out = out.float().cpu()
    written = torch.ones(t, hkv * g, dtype=torch.bool)
    if skip is not None:
        written = ~skip.t().repeat_interleave(g, 1)
        assert bool(out[~written].isnan().all()), "skip rows must stay untouched"
    assert not bool(out[written].isnan().any()), "absent parts' garbage leaked into the output"
    if has_sel:
        assert torch.equal(out[5, :g], torch.zeros(g, d)), "a row with no part writes zeros"
    err = (out[written] - want[written]).abs().max()
    assert float(err) <= 1e-2 * float(want[written].abs().max())  # bf16 output: a few steps at most
