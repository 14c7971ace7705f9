"""The tile-outer prefill kernel compiles for sm_90 on a CPU-only machine (Triton's bundled ptxas), with and
without the fused merge, and the resource report reads real numbers. This also catches what the interpreter cannot:
the v9 fused merge first failed on the GPU with a loop-carried type change that TRITON_INTERPRET=1 ran happily.
Runs in a subprocess: the kernel tests set TRITON_INTERPRET=1 for the whole session, and kernels decorated under
it cannot be compiled."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# Found without importing triton: importing it here, at collection, would fix its interpreter setting before the
# kernel test modules set TRITON_INTERPRET=1, and every interpreted kernel test would fail.
_SPEC = importlib.util.find_spec("triton")
_ROOTS = list(_SPEC.submodule_search_locations or []) if _SPEC else []
BIN = Path(_ROOTS[0]) / "backends" / "nvidia" / "bin" if _ROOTS else Path("/nonexistent")
pytestmark = pytest.mark.skipif(not (BIN / "ptxas").is_file() or not (BIN / "cuobjdump").is_file(),
                                reason="Triton or its NVIDIA tools (ptxas, cuobjdump) are not here")
ROOT = Path(__file__).resolve().parents[3]


def test_tile_outer_compiles_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    run = subprocess.run([sys.executable, "-m", "kernels.bench.tile_outer_sass", "--fuse-merge", "0", "1"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = re.findall(r"fuse_merge=(\w+): REG:(\d+) STACK:(\d+) LDL:(\d+) STL:(\d+) HGMMA:(\d+)", run.stdout)
    assert [fuse for fuse, *_ in lines] == ["False", "True"], run.stdout
    for _, regs, _stack, _ldl, _stl, hgmma in lines:
        assert 0 < int(regs) <= 255 and int(hgmma) > 0, run.stdout  # wgmma: Hopper's MMA path is used
