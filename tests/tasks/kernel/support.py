"""Shared helpers for the kernel tests: fast evaluation options and the bundled file paths."""
from __future__ import annotations

from pathlib import Path

from tasks.kernel.harness.verdict import Verdict
from tasks.kernel.runner import EvalOptions, evaluate_candidate
from tasks.kernel.targets import TARGETS_DIR

FAST = EvalOptions(isolation="subprocess", warmup=2, iters=5, timeout_s=600)


def target(name: str) -> Path:
    return TARGETS_DIR / f"{name}.py"


def evaluate(tmp: Path, target_name: str, candidate: Path, **opts: object) -> Verdict:
    options = EvalOptions(**{**FAST.__dict__, **opts})
    return evaluate_candidate(target(target_name), candidate, options, tmp / f"eval-{candidate.stem}")
