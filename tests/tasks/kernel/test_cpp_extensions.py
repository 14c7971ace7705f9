"""C++ extension candidates (torch.utils.cpp_extension.load_inline) through `m3lab kernel eval --device cpu` in the
real Docker sandbox: the compile stage builds them as the sandbox user, the compile cache serves the second
evaluation, compiler errors come back as findings, and the C++ cheats are rejected."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.kernel.targets import TARGETS_DIR

REPO = Path(__file__).resolve().parents[3]
HONEST = TARGETS_DIR / "candidates" / "softmax_cpp.py"
CHEATS = TARGETS_DIR / "cheats"
pytestmark = [pytest.mark.docker, pytest.mark.slow]

BROKEN = '''"""Compile error: a typo in the C++ (an undeclared identifier)."""
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

SRC = r"""
#include <torch/extension.h>
torch::Tensor twice(torch::Tensor x) {
    return x * tw0;
}
"""
_ext = load_inline(name="m3lab_broken", cpp_sources=SRC, functions=["twice"])


class ModelNew(nn.Module):
    def forward(self, x):
        return _ext.twice(x)
'''


def kernel_eval(tmp: Path, candidate: Path, cache: Path, *extra: str) -> tuple[int, dict]:
    """`m3lab kernel eval softmax CANDIDATE --json` as a user runs it (Docker sandbox, CPU)."""
    cmd = [sys.executable, "-c", "from orchestrator.cli import main; main()", "kernel", "eval", "softmax", str(candidate), "--device", "cpu",
           "--iters", "3", "--warmup", "1", "--compile-timeout", "1500", "--ext-cache", str(cache), "--eval-dir", str(tmp), "--json", *extra]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.stdout.strip().startswith("{"), f"no JSON verdict: {proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.returncode, json.loads(proc.stdout)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ext-cache")


def test_honest_cpp_accepted_then_served_from_cache(tmp_path: Path, cache: Path, torch_image: str) -> None:
    code, first = kernel_eval(tmp_path / "a", HONEST, cache)
    assert code == 0 and first["accepted"], first
    comp = first["compile"]
    assert comp["cached"] is False and comp["errors"] == [] and comp["extensions"][0]["ok"]
    code, second = kernel_eval(tmp_path / "b", HONEST, cache, "--no-timing")
    assert code == 0 and second["accepted"], second
    assert second["compile"]["cached"] is True  # the same source, flags, torch and arch: no second build
    assert second["compile"]["seconds"] < comp["seconds"] / 3


def test_compile_error_is_a_rejection_with_the_compilers_message(tmp_path: Path, cache: Path,
                                                                 torch_image: str) -> None:
    cand = tmp_path / "broken.py"
    cand.write_text(BROKEN)
    code, v = kernel_eval(tmp_path / "e", cand, cache, "--no-timing")
    assert code == 1 and not v["accepted"] and v["stage"] == "compile"
    errors = v["compile"]["errors"]
    assert errors and errors[0]["file"] == "main.cpp" and "tw0" in errors[0]["message"], errors
    assert any("tw0" in e and "main.cpp:" in e for e in v["errors"])  # what the producer reads


@pytest.mark.parametrize("cheat,expect", [
    ("cx01_cpp_mutate_inputs.py", "modified"),
    ("cx04_cpp_precision_downgrade.py", "shape"),
    ("cx06_cpp_oob_read.py", "shape"),
])
def test_dynamic_cpp_cheats_rejected(tmp_path: Path, cache: Path, cheat: str, expect: str, torch_image: str) -> None:
    code, v = kernel_eval(tmp_path / "c", CHEATS / cheat, cache, "--no-timing")
    assert code == 1 and not v["accepted"] and v["compile"]["extensions"][0]["ok"], v
    assert any(expect in f for f in v["failures"]), v["failures"]


@pytest.mark.parametrize("cheat,expect", [
    ("cx02_cpp_static_cache.py", "static container"),
    ("cx03_cpp_pointer_repeat.py", "mutable static variable"),
    ("cx05_cpp_forge_verdict.py", "verdict tag"),
])
def test_static_cpp_cheats_rejected_before_compiling(tmp_path: Path, cache: Path, cheat: str, expect: str,
                                                     torch_image: str) -> None:
    code, v = kernel_eval(tmp_path / "s", CHEATS / cheat, cache, "--no-timing")
    assert code == 1 and v["stage"] == "static" and v["compile"] is None
    assert any(expect in c for c in v["cheats"]), v["cheats"]
