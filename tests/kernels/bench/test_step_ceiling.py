"""The ceiling bench's count of the tile-outer step's MMA work (CPU, the split under TRITON_INTERPRET=1; its timing
needs a GPU)."""
from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():  # must be set before the kernels' @triton.jit run
    os.environ["TRITON_INTERPRET"] = "1"

from kernels.bench.step_ceiling import step_mma_flops  # noqa: E402
from kernels.msa.inputs import make_case  # noqa: E402
from tests.kernels.msa.checks import DEVICE  # noqa: E402


def test_step_work_is_every_tiles_union_times_a_full_block_product():
    """256 queries (32 tiles of 8 tokens) after 768 tokens of context, each choosing the same 6 fully visible blocks:
    every tile runs tile-outer over a 6-block union, 128 rows x 128 keys x 128 x 4 FLOPs per block."""
    case = make_case([1024], [256], 16, 1, 128, torch.bfloat16, DEVICE, seed=3)
    sel = torch.full((1, 256, 16), -1, dtype=torch.int32, device=DEVICE)
    sel[:, :, :6] = torch.arange(6, dtype=torch.int32, device=DEVICE)
    assert step_mma_flops(case, sel) == 4.0 * 32 * 6 * 128 * 128 * 128
    sel[:, :, 5] = -1  # one block fewer for every token: one block fewer per union
    assert step_mma_flops(case, sel) == 4.0 * 32 * 5 * 128 * 128 * 128
