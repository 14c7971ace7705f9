"""The shipped path: the evaluator runs inside a real sandbox (Docker `m3lab/torch-cpu`, or the bubblewrap process
backend), the verdict comes back through the nonce-tagged stdout line."""
from __future__ import annotations

from pathlib import Path

import pytest

from tasks.kernel.runner import EvalOptions, evaluate_candidate
from tasks.kernel.targets import TARGETS_DIR

HONEST = TARGETS_DIR / "candidates" / "softmax_torch.py"
CHEAT = TARGETS_DIR / "cheats" / "c02_mutate_inputs.py"


def _opts(backend: str, **kw: object) -> EvalOptions:
    return EvalOptions(isolation="sandbox", sandbox_backend=backend, warmup=1, iters=4, timeout_s=600,  # type: ignore
                       **kw)


@pytest.mark.docker
def test_docker_sandbox_accepts_honest_rejects_cheat(tmp_path: Path, torch_image: str) -> None:
    v = evaluate_candidate(TARGETS_DIR / "softmax.py", HONEST, _opts("docker"), tmp_path / "honest")
    assert v.accepted and v.speedup, v.summary()
    bad = evaluate_candidate(TARGETS_DIR / "softmax.py", CHEAT, _opts("docker", timing=False), tmp_path / "cheat")
    assert not bad.accepted and any("modified" in f for f in bad.failures)


@pytest.mark.docker
def test_docker_triton_candidate_under_interpreter(tmp_path: Path, torch_image: str) -> None:
    cand = TARGETS_DIR / "candidates" / "softmax_triton.py"
    v = evaluate_candidate(TARGETS_DIR / "softmax.py", cand, _opts("docker", timing=False), tmp_path / "tri")
    assert v.accepted, v.summary()


def test_process_sandbox_accepts_honest(tmp_path: Path, bwrap: str) -> None:
    v = evaluate_candidate(TARGETS_DIR / "softmax.py", HONEST, _opts("process", timing=False), tmp_path / "p")
    assert v.accepted, v.summary()
