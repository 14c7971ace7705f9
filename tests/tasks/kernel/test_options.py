"""The evaluation options: one declaration, written as options.json, loaded back as validated data."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.kernel.harness.options import OPTIONS_FILE, EvalOptions, OptionsError, load_options, write_options
from tasks.kernel.runner import EVALUATOR_ARGS, parse_verdict, prepare_eval_dir, sandbox_spec
from tasks.kernel.targets import TARGETS_DIR
from tasks.kernel.task import KernelTask
from tasks.registry import build_task


def test_options_round_trip_through_the_file(tmp_path: Path) -> None:
    opts = EvalOptions(device="cuda", iters=7, warmup=0, sanitize_above=1.5, ext_cache=tmp_path / "host-cache")
    write_options(tmp_path, opts, "/inside/cache")
    loaded = load_options(tmp_path / OPTIONS_FILE)
    assert loaded == EvalOptions(device="cuda", iters=7, warmup=0, sanitize_above=1.5, ext_cache=Path("/inside/cache"))


@pytest.mark.parametrize("bad, reason", [
    ({"iters": 0}, "iters"), ({"iters": 2.5}, "integer"), ({"warmup": True}, "integer"),
    ({"timeout_s": "600"}, "number"), ({"device": "tpu"}, "one of"), ({"static": 1}, "bool"),
    ({"ext_cache": "relative/dir"}, "absolute"), ({"call_timeout_s": None}, "null"), ({"nonce": "x"}, "unknown"),
])
def test_loader_rejects_what_is_not_declared(tmp_path: Path, bad: dict, reason: str) -> None:
    (tmp_path / OPTIONS_FILE).write_text(json.dumps(bad))
    with pytest.raises(OptionsError, match=reason):
        load_options(tmp_path / OPTIONS_FILE)
    (tmp_path / OPTIONS_FILE).write_text(json.dumps({"iters": 3}))
    assert load_options(tmp_path / OPTIONS_FILE).iters == 3


def test_host_construction_is_validated_too() -> None:
    with pytest.raises(OptionsError, match="memory_mb"):
        EvalOptions(memory_mb=0)


def test_evaluator_refuses_forged_options_with_an_error_verdict(tmp_path: Path) -> None:
    """A file the host did not write (wrong types): the evaluator answers with an error, never a pass."""
    eval_dir = tmp_path / "eval"
    nonce = prepare_eval_dir(eval_dir, TARGETS_DIR / "softmax.py", TARGETS_DIR / "candidates" / "softmax_torch.py")
    (eval_dir / OPTIONS_FILE).write_text(json.dumps({"iters": "many", "static": "no"}))
    proc = subprocess.run([sys.executable, *EVALUATOR_ARGS], cwd=eval_dir, capture_output=True, text=True, timeout=120)
    verdict = parse_verdict(proc.stdout, nonce)
    assert not verdict.accepted
    assert "harness options" in verdict.errors[0] and "iters" in verdict.errors[0] and "static" in verdict.errors[0]


def test_task_params_keep_the_options_and_resume_old_flat_params() -> None:
    task = KernelTask(target="softmax", isolation="subprocess", options=EvalOptions(iters=4, warmup=1))
    again = KernelTask(**task.params())
    assert again.options == task.options and again.options.isolation == "subprocess"
    old = {k: v for k, v in task.params().items() if k != "options"} | {"iters": 9, "warmup": 2, "timeout_s": 60.0}
    resumed = build_task("kernel", old)  # what a resume does
    assert (resumed.options.iters, resumed.options.warmup, resumed.options.timeout_s) == (9, 2, 60.0)


def test_one_sandbox_recipe_for_producer_and_evaluation(tmp_path: Path) -> None:
    producer = KernelTask(target="softmax").sandbox_spec(tmp_path)
    evaluation = sandbox_spec(tmp_path, "cpu", EvalOptions(memory_mb=1024, timeout_s=100), cache=tmp_path / "c")
    assert producer.image == evaluation.image and producer.host_paths == evaluation.host_paths[:1]
    assert producer.env == {"TRITON_INTERPRET": "1"} and evaluation.memory_mb == 1024
    assert evaluation.exec_timeout_s == 100 + 300 and evaluation.host_paths[-1] == tmp_path / "c"
