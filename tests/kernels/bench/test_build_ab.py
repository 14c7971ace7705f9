"""The build-vs-build bench (GPU, marked `gpu`: the sm_90a library): a build timed against itself gives identical
outputs on both paths, and the process's library is this build again afterwards (the last timed was the old)."""
from __future__ import annotations

import pytest
import torch

from tests.kernels.msa.checks import GPU


@pytest.mark.gpu
@pytest.mark.skipif(not GPU or torch.cuda.get_device_capability() != (9, 0), reason="needs an sm_90 GPU")
def test_a_build_against_itself_matches_and_restores_the_library():
    from kernels.bench.build_ab import PATHS, build_vs_build_rows
    from kernels.msa import cuda

    this = cuda.load()
    rows: list = []
    build_vs_build_rows(4096, "f=0.9", cuda.build(), rows, rounds=1)
    assert len(rows) == 2 * len(PATHS)
    assert all("max |this - old| 0.0e+00" in row.note for row in rows), [row.note for row in rows]
    assert cuda._LIB[0] is this
