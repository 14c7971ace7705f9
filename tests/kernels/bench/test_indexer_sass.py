"""The MSA indexer compiles for sm_90 on a CPU-only machine (Triton's bundled ptxas) and the fp8 pair (e4m3 index q
and cache) issues a native FP8 wgmma (PTX `.e4m3.e4m3`, SASS QGMMA, no HGMMA) while bf16 and the mixed pairs issue
bf16 wgmma (v13r). Runs in a subprocess for the reason test_tile_outer_sass.py gives (TRITON_INTERPRET)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.kernels.bench.test_tile_outer_sass import ROOT, pytestmark  # noqa: F401  (same skip: no ptxas here)


def test_fp8_pair_uses_fp8_wgmma():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    run = subprocess.run([sys.executable, "-m", "kernels.bench.indexer_sass", "--configs", "128x3x8"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = {(q, k): (ptx, int(regs), int(hg), int(qg)) for q, k, ptx, regs, hg, qg in re.findall(
        r"q=(\w+) k=(\w+) \S+: (.*?); REG:(\d+) STACK:\d+ LDL:\d+ STL:\d+ HGMMA:(\d+) QGMMA:(\d+)", run.stdout)}
    assert set(lines) == {("fp8", "fp8"), ("bf16", "bf16"), ("fp8", "bf16"), ("bf16", "fp8")}, run.stdout
    ptx, regs, hgmma, qgmma = lines[("fp8", "fp8")]
    assert "e4m3.e4m3" in ptx and qgmma > 0 and hgmma == 0 and regs <= 255, run.stdout
    for pair in (("bf16", "bf16"), ("fp8", "bf16"), ("bf16", "fp8")):
        ptx, _, hgmma, qgmma = lines[pair]
        assert "bf16.bf16" in ptx and hgmma > 0 and qgmma == 0, (pair, run.stdout)
