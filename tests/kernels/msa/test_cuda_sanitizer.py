"""compute-sanitizer over the MSA kernels (GPU, marked `gpu`): memcheck (out-of-bounds and misaligned accesses),
racecheck (shared-memory hazards between threads) and synccheck (barriers used wrongly) report nothing on any path
of ``sanitize_msa.py``: the sm_90a tile-outer and KV-outer kernels at both groups, bf16 and int8 partials, fused
and unfused, the FP8 step, a reused workspace, and the Triton indexer, split, merge and decode around them.
Correctness tests compare outputs; these catch what an output can hide (a read past a buffer that happens to hold
harmless bytes, a race that loses only on another card's timing).

initcheck (reads of device memory nothing wrote) runs on the indexer and decode only. On the prefill it cannot
judge (NOTES.md v18x): it does not count the CUDA KV-outer kernel's TMA stores as writes (with the Triton KV-outer
stage writing the same parts by plain stores, the fused step's reads of them are clean), and the merge loads every
slot's LSE before a select drops the slots that have no part (by design: the LSE and selection loads stay
independent, so they are in flight together)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tasks.kernel.harness.sanitize import ERROR_EXIT, find_sanitizer, first_report, summary_clean
from tests.kernels.msa.checks import GPU

ROOT = Path(__file__).resolve().parents[3]
TIMEOUT_S = 1200
INITCHECK_CASES = ["indexer", "decode"]


def sanitize(tool: str, cases: list[str]) -> subprocess.CompletedProcess[str]:
    sanitizer = find_sanitizer()
    assert sanitizer, "compute-sanitizer not found (CUDA_HOME/bin or PATH)"
    cmd = [sanitizer, "--tool", tool, "--error-exitcode", str(ERROR_EXIT), "--print-limit", "20",
           sys.executable, "-m", "tests.kernels.msa.sanitize_msa", *cases]
    # Each tensor its own allocation: a read past its end is reported, not served from a neighbour in the pool.
    env = dict(os.environ, PYTORCH_NO_CUDA_MEMORY_CACHING="1")
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


@pytest.mark.gpu
@pytest.mark.skipif(not GPU or torch.cuda.get_device_capability() != (9, 0), reason="needs an sm_90 GPU")
@pytest.mark.parametrize("tool", ["memcheck", "racecheck", "synccheck", "initcheck"])
def test_kernels_are_sanitizer_clean(tool):
    from tests.kernels.msa.sanitize_msa import CASES

    cases = INITCHECK_CASES if tool == "initcheck" else list(CASES)
    proc = sanitize(tool, cases)
    out = proc.stdout + proc.stderr
    done = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("ok ")]
    assert done == cases, f"{tool}: ran {done}\n{out[-3000:]}"
    assert proc.returncode == 0 and summary_clean(tool, out), f"{tool}:\n{first_report(out)}"
