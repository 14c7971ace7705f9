"""The scripted kernel search script (benchmarks/kernel_search_soak.py) on a tiny budget with C++ (CPU) candidates:
the same script the H200 runs with the CUDA pool (results/kernel_cuda_search.md). Real loop, real evaluator,
real compile stage; the run is stopped by `m3lab runs stop` from another process and resumed in a fresh one."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.kernel_search_soak import candidates, cuda_variants

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "benchmarks" / "kernel_search_soak.py"


def test_pools_are_what_their_labels_say() -> None:
    """The CUDA variants are real edits of the bundled candidate (a planted variant is never a silent copy), and
    every pool cycles all four kinds."""
    honest = (ROOT / "tasks/kernel/targets/candidates/softmax_cuda.py").read_text()
    variants = cuda_variants()
    assert variants["wrong"] != honest and "+ 1e-3f" in variants["wrong"]
    assert "const_cast<float*>(row)[c] = 0.f" in variants["zero_input"]
    for pool in ("cpp", "cuda"):
        kinds = {label.split(":")[0] for label, _ in candidates(pool, "softmax")}
        assert kinds == {"honest", "wrong", "compile_error", "cheat"}, pool
        codes = [code for _, code in candidates(pool, "softmax")]
        assert len(set(codes)) == len(codes) and all(code.endswith("\n") for code in codes)


@pytest.mark.slow
def test_cpp_search_stopped_by_the_user_and_resumed(tmp_path: Path) -> None:
    out = tmp_path / "soak.md"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--pool", "cpp", "--iterations", "5",
                           "--stop-at", "2", "--iters", "2", "--prebuild", "--work", str(tmp_path / "work"),
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    res = json.loads(out.with_suffix(".json").read_text())
    assert res["iterations"] == 5 and res["contiguous"] and res["rows_after_resume_contiguous"]
    stop = res["stopped"]
    assert stop["status"] == "stopped" and stop["reason"].startswith("user") and 2 <= stop["at_iteration"] < 5
    assert stop["requested"]["exit_code"] == 0 and "stop requested" in stop["requested"]["output"]
    assert res["resumed"]["at_iteration"] == 5
    kinds = res["kinds"]
    assert res["cheats_accepted"] == 0 and kinds["cheat"]["submitted"] == 2 and kinds["cheat"]["flagged_as_cheat"] == 2
    assert kinds["honest"]["accepted"] == 1 and res["best"]["label"] == "honest:softmax_cpp"
    assert kinds["wrong"]["accepted"] == 0
    broken = kinds["compile_error"]
    assert broken["accepted"] == 0 and broken["first_reason"].startswith("compile:") and "main.cpp" in \
        broken["first_reason"], broken
    # the two C++ sources were built by the prebuild: every compile stage in the loop was a cache hit
    assert res["compile_first_builds_in_loop"] == 0 and res["compile_cache_hits"] == 2
    compiled = {b["label"] for b in res["prebuild"]["builds"] if b["compile_s"] is not None}
    assert compiled == {"honest:softmax_cpp", "compile_error:cpp_missing_semicolon"}  # the cheats stop at the scan
    assert "| cheats accepted | **0** |" in out.read_text()
