"""The tile-outer prefill kernel compiles for sm_90 on a CPU-only machine (Triton's bundled ptxas), with and
without the fused merge, and the resource report reads real numbers. This also catches what the interpreter cannot:
the v9 fused merge first failed on the GPU with a loop-carried type change that TRITON_INTERPRET=1 ran happily."""
from __future__ import annotations

from pathlib import Path

import pytest

triton = pytest.importorskip("triton")
BIN = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
pytestmark = pytest.mark.skipif(not (BIN / "ptxas").is_file() or not (BIN / "cuobjdump").is_file(),
                                reason="Triton's NVIDIA tools (ptxas, cuobjdump) are not bundled here")


@pytest.mark.parametrize("fuse_merge", [False, True])
def test_tile_outer_compiles_for_sm90(fuse_merge):
    from kernels.bench.tile_outer_sass import compile_sm90, report

    line = report(compile_sm90(fuse_merge, warps=4, keys=64, stages=2))
    fields = dict(item.split(":") for item in line.split())
    assert 0 < int(fields["REG"]) <= 255 and int(fields["HGMMA"]) > 0, line  # wgmma: Hopper's MMA path is used
