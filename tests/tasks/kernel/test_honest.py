"""Honest candidates are accepted on CPU (PyTorch-level ones timed, Triton ones under TRITON_INTERPRET=1 for
correctness), and the harness's own failure modes give error verdicts, never passes."""
from __future__ import annotations

from pathlib import Path

import pytest

from tasks.kernel.targets import TARGETS_DIR
from tests.tasks.kernel.support import evaluate

CANDS = TARGETS_DIR / "candidates"


@pytest.mark.parametrize("target,cand", [("softmax", "softmax_torch.py"), ("layernorm", "layernorm_torch.py"),
                                         ("matmul_bias_gelu", "matmul_bias_gelu_torch.py")])
def test_pytorch_candidates_accepted_and_timed(tmp_path: Path, target: str, cand: str) -> None:
    v = evaluate(tmp_path, target, CANDS / cand)
    assert v.accepted, v.summary()
    assert v.stage == "done" and v.speedup and v.speedup > 0 and v.ref_ms and v.cand_ms
    assert v.aa_spread is not None and len(v.timings) == 1 and v.timings[0].floor_ms > 0
    assert v.checked_calls >= 5 and v.max_rel_err is not None and v.max_rel_err < 1e-4


@pytest.mark.parametrize("target,cand", [("softmax", "softmax_triton.py"), ("layernorm", "layernorm_triton.py"),
                                         ("matmul_bias_gelu", "matmul_bias_gelu_triton.py")])
def test_triton_candidates_correct_under_interpreter(tmp_path: Path, target: str, cand: str) -> None:
    v = evaluate(tmp_path, target, CANDS / cand, timing=False)
    assert v.accepted, v.summary()
    assert v.speedup is None and v.checked_calls >= 5


def test_gpu_only_target_refused_on_cpu(tmp_path: Path) -> None:
    v = evaluate(tmp_path, "fp8_gemm", CANDS / "fp8_gemm_scaled_mm.py")
    assert not v.accepted and "not cpu" in v.errors[0]


def test_import_error_and_missing_class_are_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\nclass ModelNew(torch.nn.Module):\n    def forward(self, x):\n        return x +\n")
    v = evaluate(tmp_path, "softmax", broken, timing=False)
    assert not v.accepted and v.stage == "import" and "SyntaxError" in v.errors[0]
    nocls = tmp_path / "nocls.py"
    nocls.write_text("import torch\n")
    v = evaluate(tmp_path, "softmax", nocls, timing=False)
    assert not v.accepted and "ModelNew" in v.errors[0]


def test_wrong_parameters_and_exceptions_are_reported(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.py"
    wrong.write_text("import torch\nclass ModelNew(torch.nn.Module):\n    def __init__(self, hidden, eps=1e-5):\n"
                     "        super().__init__()\n        self.w = torch.nn.Parameter(torch.ones(hidden))\n"
                     "    def forward(self, x):\n        raise ValueError('boom')\n")
    v = evaluate(tmp_path, "layernorm", wrong, timing=False)
    assert not v.accepted and "weights" in v.errors[0]
    raising = tmp_path / "raising.py"
    raising.write_text("import torch\nclass ModelNew(torch.nn.Module):\n    def forward(self, x):\n"
                       "        raise ValueError('boom')\n")
    v = evaluate(tmp_path, "softmax", raising, timing=False)
    assert not v.accepted and "boom" in v.errors[0]


def test_hung_candidate_times_out(tmp_path: Path) -> None:
    slow = tmp_path / "slow.py"
    slow.write_text("import torch\nclass ModelNew(torch.nn.Module):\n    def forward(self, x):\n"
                    "        while True:\n            pass\n")
    v = evaluate(tmp_path, "softmax", slow, timing=False, call_timeout_s=5)
    assert not v.accepted and "timed out" in v.errors[0]
