"""The planted-cheat battery on CPU: every cheat is rejected by the full harness, and the dynamic layer alone
(static checks off) rejects or neutralises it as its CheatCase says. Pattern 16 (editing target.py) is a task-level
check: see test_task.py."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tasks.kernel.targets import TARGETS_DIR
from tasks.kernel.targets.battery import CHEAT_CASES, CheatCase, dynamic_ok
from tests.tasks.kernel.support import evaluate


@pytest.mark.parametrize("case", CHEAT_CASES, ids=[c.file.removesuffix(".py") for c in CHEAT_CASES])
def test_cheat_rejected(tmp_path: Path, case: CheatCase) -> None:
    if len(os.sched_getaffinity(0)) < case.min_cpus:
        pytest.skip(f"needs {case.min_cpus} CPUs")
    cand = TARGETS_DIR / "cheats" / case.file
    full = evaluate(tmp_path / "full", case.target, cand, timing=case.timed)
    assert not full.accepted, f"{case.file} was accepted: {full.summary()}"
    assert full.cheats or full.failures or full.errors
    if full.stage == "static" or case.dynamic != "reject":
        # The static layer stopped it (or it is not the dynamic layer's to reject): run without it.
        dyn = evaluate(tmp_path / "dyn", case.target, cand, timing=case.timed, static=False)
        ok, why = dynamic_ok(case, dyn)
        assert ok, why
        if case.dynamic == "reject":
            assert any("static check (disabled)" in w for w in dyn.warnings)


def test_forged_verdict_line_is_ignored(tmp_path: Path) -> None:
    """The forger prints a 1000x verdict on stdout and to the evaluator's fd 1; only the nonce-tagged line counts."""
    v = evaluate(tmp_path, "softmax", TARGETS_DIR / "cheats" / "c18_forge_verdict.py", timing=False, static=False)
    assert not v.accepted and v.speedup is None and v.errors
    # The forger's worker ends after printing; the harness says so (its own words, not the forged line's).
    assert any(words in v.errors[0] for words in ("worker failed", "gone", "exited with code"))


def test_escaping_the_timing_core_is_caught(tmp_path: Path) -> None:
    """CPU timing pins every worker to one core; a candidate that moves itself elsewhere is rejected."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    cand = TARGETS_DIR / "cheats" / "c19_escape_core.py"
    assert not evaluate(tmp_path / "full", "softmax", cand, timing=False).accepted
    dyn = evaluate(tmp_path / "dyn", "softmax", cand, timing=True, static=False)
    assert not dyn.accepted and any("affinity" in c for c in dyn.cheats), dyn.summary()


def test_time_below_the_roofline_is_a_cheat(tmp_path: Path) -> None:
    """A target claiming absurd FLOPs makes every real time 'faster than physics': the floor check fires."""
    target = tmp_path / "absurd.py"
    target.write_text((TARGETS_DIR / "softmax.py").read_text().replace("return 5.0 * batch_size * dim",
                                                                        "return 1e18"))
    from tasks.kernel.runner import EvalOptions, evaluate_candidate

    v = evaluate_candidate(target, TARGETS_DIR / "candidates" / "softmax_torch.py",
                           EvalOptions(isolation="subprocess", warmup=1, iters=3), tmp_path / "ev")
    assert not v.accepted and any("roofline" in c for c in v.cheats), v.summary()
