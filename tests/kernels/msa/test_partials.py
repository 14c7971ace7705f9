"""The partial-output codecs (``merge.store_part`` / ``load_part``) against torch: int8 with a per-row absmax scale
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

from kernels.msa.merge import load_part, store_part  # noqa: E402
from tests.kernels.msa.checks import DEVICE  # noqa: E402

ROWS, D = 16, 32


@triton.jit
def _round_trip_kernel(o_ptr, po_ptr, ps_ptr, back_ptr, ROWS: tl.constexpr, D: tl.constexpr):
    offs_r = tl.arange(0, ROWS)
    offs_d = tl.arange(0, D)
    o = tl.load(o_ptr + offs_r[:, None] * D + offs_d[None, :])
    keep = offs_r != 3  # one masked row: neither written nor read
    store_part(po_ptr, ps_ptr, offs_r, offs_d, o, keep, D)
    tl.store(back_ptr + offs_r[:, None] * D + offs_d[None, :], load_part(po_ptr, ps_ptr, offs_r, offs_d, keep, D))


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
    if dtype == torch.int8:
        amax = o.abs().amax(1)
        scale = amax / 127.0
        want = torch.round(o / torch.where(amax > 0, scale, 1.0)[:, None]).to(torch.int8)  # half to even
        assert torch.equal(po[keep], want[keep])
        assert torch.equal(po[3], torch.full((D,), 7, dtype=torch.int8)) and float(ps[3]) == -1.0
        assert torch.allclose(ps[keep], scale[keep], rtol=1e-6, atol=0)
        assert torch.allclose(back[keep], (want.float() * ps[:, None])[keep], rtol=1e-6, atol=0)
        assert int(po[2, 0]) == -127 and int(po[2, 1]) == 127
        err = (back - o)[keep].abs() / amax[keep, None].clamp_min(1e-30)
        assert float(err.max()) <= 0.5 / 127 + 1e-6  # at most half a step of the row's scale
    else:  # a plain cast (the interpreter truncates where the GPU rounds to nearest: one bf16 step either way)
        assert bool(((po.float() - o).abs() <= o.abs() * 2.0 ** -7)[keep].all())
        assert torch.equal(back[keep], po[keep].float())
