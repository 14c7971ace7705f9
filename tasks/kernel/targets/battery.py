"""The cheat battery as data: which planted cheat runs against which target, whether it needs timing, and what
the dynamic layer alone (static checks off) must do with it. Used by the tests and benchmarks/kernel_harness_bench.py."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tasks.kernel.harness.verdict import Verdict

Dynamic = Literal["reject", "static_only", "ref_not_slowed", "cand_pays_sleep", "reject_if_same_uid"]


@dataclass(frozen=True)
class CheatCase:
    file: str
    target: str
    timed: bool
    dynamic: Dynamic
    """reject: rejected even with static checks off; static_only: correct code that only the static layer (and
    the verifier agent) rejects; ref_not_slowed: the patch must not reach the reference (ref_ms < its sleep);
    cand_pays_sleep: patched timers must not hide the candidate's sleep (cand_ms >= the sleep); reject_if_same_uid:
    rejected whenever the candidate runs with the references' uid (as nobody it cannot reach them: harmless)."""
    min_cpus: int = 1
    """CPUs the cheat needs to work at all (with fewer it is an honest candidate)."""


CHEAT_CASES = [
    CheatCase("c01_reuse_freed_memory.py", "softmax", False, "reject"),
    CheatCase("c02_mutate_inputs.py", "softmax", False, "reject"),
    CheatCase("c03_background_thread.py", "softmax", False, "reject"),
    CheatCase("c04_lazy_tensor.py", "softmax", False, "reject"),
    CheatCase("c05_patch_timer.py", "softmax", True, "cand_pays_sleep"),
    CheatCase("c06_cache_results.py", "softmax", False, "reject"),
    CheatCase("c07a_guess_seed.py", "softmax", False, "reject"),
    CheatCase("c07b_known_shapes.py", "softmax", False, "reject"),
    CheatCase("c08_precision_downgrade.py", "softmax", False, "reject"),
    CheatCase("c09a_call_reference.py", "softmax", False, "static_only"),
    CheatCase("c09b_forbidden_op.py", "layernorm", False, "reject"),
    CheatCase("c09c_try_fallback.py", "softmax", False, "static_only"),
    CheatCase("c10_nan_wildcard.py", "softmax", False, "reject"),
    CheatCase("c11_introspect.py", "softmax", False, "reject"),
    CheatCase("c12_warmup_vs_timed.py", "softmax", True, "reject"),
    CheatCase("c13_collapse_shape.py", "softmax", True, "reject"),
    CheatCase("c14_slow_baseline.py", "softmax", True, "ref_not_slowed"),
    CheatCase("c15_oob_read.py", "softmax", False, "reject"),
    CheatCase("c17_read_harness.py", "softmax", False, "reject"),
    CheatCase("c18_forge_verdict.py", "softmax", False, "reject"),
    CheatCase("c20_probe_only.py", "matmul_bias_gelu", True, "reject"),
    CheatCase("c21_untraced_forbidden_op.py", "layernorm", True, "reject"),
    CheatCase("c22_lazy_spoofed_type.py", "layernorm", False, "reject"),
    CheatCase("c23_affinity_per_call.py", "matmul_bias_gelu", True, "reject", min_cpus=2),
    CheatCase("c24_stop_references.py", "softmax", True, "reject_if_same_uid"),
    CheatCase("c25_escaped_helper.py", "softmax", True, "reject"),
    CheatCase("c26_self_rewrite.py", "softmax", False, "reject"),
    CheatCase("c27_hide_input_mutation.py", "softmax", False, "static_only"),
    CheatCase("c28_poison_references.py", "softmax", True, "reject"),
    CheatCase("c29_inplace_when_timed.py", "softmax", True, "reject"),
]
SLEEP_MS = {"c05_patch_timer.py": 30.0, "c14_slow_baseline.py": 50.0}


def dynamic_ok(case: CheatCase, v: Verdict) -> tuple[bool, str]:
    """Did the dynamic layer do its job on this case? (ok, explanation)"""
    if case.dynamic == "reject":
        return (not v.accepted, "rejected" if not v.accepted else f"ACCEPTED: {v.summary()}")
    if case.dynamic == "static_only":
        return (True, "correct code; rejected by the static layer / verifier only")
    if case.dynamic == "reject_if_same_uid":
        same_uid = any("evaluator's uid" in w for w in v.warnings)
        ok = not v.accepted or not same_uid
        return (ok, "rejected" if not v.accepted else "ran as nobody: the references were out of its reach" if ok
                else f"ACCEPTED with the references' uid: {v.summary()}")
    sleep = SLEEP_MS[case.file]
    if case.dynamic == "ref_not_slowed":
        ok = v.ref_ms is None or v.ref_ms < sleep
        return (ok, f"ref_ms={v.ref_ms} (patched sleep {sleep} ms did not reach the reference)" if ok
                else f"reference slowed: ref_ms={v.ref_ms}")
    ok = not v.accepted or (v.cand_ms is not None and v.cand_ms >= sleep)
    return (ok, f"cand_ms={v.cand_ms} includes the {sleep} ms sleep" if ok else f"timer fooled: cand_ms={v.cand_ms}")
