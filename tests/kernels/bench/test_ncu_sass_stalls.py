"""ncu_sass_stalls reads an ncu source-page CSV (the '==PROF==' lines and the kernel-name row skipped), ranks the
instructions by stall samples and sums them per SASS line range (``--regions``, v18p)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kernels.bench.ncu_sass_stalls import parse_regions

CSV = '''==PROF== Connected to process 1
"Kernel Name","void k(int)",
"Address","Source","Warp Stall Sampling (All Samples)","stall_wait","stall_barrier","stall_barrier (Not Issued)"
"0x10","LDS R1, [R2]","10","2","8","8"
"0x20","BAR.SYNC R0, 0x80","30","0","30","30"
"0x30","HGMMA.64x128x16.F32.BF16 R24","60","1","0","0"
'''


def test_parse_regions() -> None:
    assert parse_regions("") == []
    assert parse_regions("Q to e4m3: 0-2;loop S:2-3") == [("Q to e4m3", 0, 2), ("loop S", 2, 3)]


def test_regions_and_ranking_from_a_csv(tmp_path: Path) -> None:
    path = tmp_path / "sass.csv"
    path.write_text(CSV)
    out = subprocess.run([sys.executable, "-m", "kernels.bench.ncu_sass_stalls", str(path), "--top", "2",
                          "--regions", "head:0-2;gemm:2-3"], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[0] == "instructions 3, stall samples 100"
    assert "stall_barrier 38.0%" in lines[1] and "stall_wait 3.0%" in lines[1]
    assert "HGMMA" in lines[3] and "BAR.SYNC" in lines[4]  # ranked by samples
    assert lines[-2].startswith("region head") and lines[-2].endswith("40.0%")
    assert lines[-1].startswith("region gemm") and lines[-1].endswith("60.0%")
