"""CUDA C++ candidates on a GPU (run on the device machine; skipped elsewhere): honest CUDA candidates accepted,
the CUDA cheats rejected (static on) and rejected or neutralised by the dynamic layer alone (static off), an
illegal address ends only that evaluation, compute-sanitizer catches what correctness cannot.
The same checks, timed and tabulated, are benchmarks/kernel_cuda_bench.py (results/kernel_cuda.md)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tasks.kernel.runner import EvalOptions, evaluate_candidate
from tasks.kernel.targets import TARGETS_DIR

pytestmark = [pytest.mark.gpu, pytest.mark.slow]
CANDS, CHEATS = TARGETS_DIR / "candidates", TARGETS_DIR / "cheats"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ext-cache")
    path.parent.chmod(0o755)
    return path


def run(tmp: Path, cache: Path, target: str, cand: Path, **kw: object):  # noqa: ANN201
    tmp.parent.chmod(0o755)  # the candidate's user reaches its evaluation folder
    options = {"warmup": 1, "iters": 5, "timing": False, **kw}  # a test's own settings win
    opts = EvalOptions(device="cuda", isolation="subprocess", timeout_s=600, ext_cache=cache,
                       **options)  # type: ignore[arg-type]
    return evaluate_candidate(TARGETS_DIR / f"{target}.py", cand, opts, tmp / cand.stem)


@pytest.mark.parametrize("target,cand", [("softmax", "softmax_cuda.py"), ("layernorm", "layernorm_cuda.py"),
                                         ("matmul_bias_gelu", "matmul_bias_gelu_cuda.py")])
def test_honest_cuda_accepted_and_faster(tmp_path: Path, cache: Path, target: str, cand: str) -> None:
    v = run(tmp_path, cache, target, CANDS / cand, timing=True, iters=20, warmup=3)
    assert v.accepted and v.speedup and v.speedup > 1.0, v.summary()
    assert v.compile and v.compile["errors"] == []


@pytest.mark.parametrize("cheat", sorted(p.name for p in CHEATS.glob("cu0*.py")))
def test_cuda_cheats_rejected_by_static_scan(tmp_path: Path, cache: Path, cheat: str) -> None:
    v = run(tmp_path, cache, "softmax", CHEATS / cheat)
    assert not v.accepted and v.stage == "static" and v.compile is None, v.summary()


@pytest.mark.parametrize("cheat,outcome", [("cu01_cuda_mutate_inputs.py", "reject"),
                                           ("cu02_cuda_precision_downgrade.py", "reject"),
                                           ("cu03_cuda_oob_read.py", "reject"),
                                           ("cu06_cuda_pointer_repeat.py", "reject"),
                                           ("cu04_cuda_side_stream.py", "neutralised"),
                                           ("cu05_cublas_own_stream.py", "neutralised")])
def test_cuda_cheats_dynamic_layer(tmp_path: Path, cache: Path, cheat: str, outcome: str) -> None:
    v = run(tmp_path, cache, "softmax", CHEATS / cheat, static=False)
    if outcome == "reject":
        assert not v.accepted and v.failures, v.summary()
    else:  # the harness synchronised the whole device before reading: the side-stream work was waited for
        assert v.correct, v.summary()


def test_illegal_address_ends_only_that_evaluation(tmp_path: Path, cache: Path) -> None:
    bad = run(tmp_path / "a", cache, "softmax", CHEATS / "cu07_cuda_illegal_address.py", static=False)
    assert not bad.accepted and any("illegal memory access" in e for e in bad.errors), bad.summary()
    good = run(tmp_path / "b", cache, "softmax", CANDS / "softmax_cuda.py")
    assert good.accepted, good.summary()


def test_sanitizer_racecheck_rejects_a_race_correctness_accepts(tmp_path: Path, cache: Path) -> None:
    plain = run(tmp_path / "a", cache, "softmax", CHEATS / "cu08_cuda_shared_race.py", static=False)
    sanitized = run(tmp_path / "b", cache, "softmax", CHEATS / "cu08_cuda_shared_race.py", static=False,
                    sanitize=True)
    assert not sanitized.accepted and any("racecheck" in e for e in sanitized.errors), sanitized.summary()
    assert plain.correct  # only the sanitizer sees it


def test_sanitizer_passes_honest_kernel(tmp_path: Path, cache: Path) -> None:
    v = run(tmp_path, cache, "softmax", CANDS / "softmax_cuda.py", sanitize=True)
    assert v.accepted and v.sanitizer and all(t["ok"] for t in v.sanitizer["tools"].values()), v.summary()
