"""The compute-sanitizer stage (CUDA): memcheck and racecheck over one forward of the candidate at a small shape.

The parent (evaluator) runs `compute-sanitizer --tool T python -m harness.sanitize ...` as the candidate's user
with the worker's environment; the child imports the candidate (its extensions come from the compile stage's
build), builds ModelNew, runs it once on inputs from the target's get_inputs() and synchronises. PyTorch's caching
allocator is turned off in the child so every tensor is its own allocation and an out-of-bounds read is reported
instead of landing silently in a neighbour's memory."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .procs import NOBODY, WorkerConfig, _env, can_drop_privileges, ext_args

TOOLS = ("memcheck", "racecheck")
ERROR_EXIT = 86
REPORT_LINES = 10


def find_sanitizer() -> str | None:
    found = shutil.which("compute-sanitizer")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if home and (Path(home) / "bin" / "compute-sanitizer").is_file():
            return str(Path(home) / "bin" / "compute-sanitizer")
    return None


def first_report(output: str) -> str:
    """The tool's first error block (its `=========` lines after the banner), trimmed."""
    lines = [ln for ln in output.splitlines() if ln.startswith("=========")]
    body = [ln for ln in lines if "COMPUTE-SANITIZER" not in ln]
    for i, ln in enumerate(body):
        text = ln.strip("= ").strip()
        if text and not text.startswith(("ERROR SUMMARY", "RACECHECK SUMMARY", "LEAK SUMMARY")):
            return "\n".join(body[i:i + REPORT_LINES])[:1500]
    return "\n".join(body[-3:])[:1500] or output[-800:]


def summary_clean(tool: str, output: str) -> bool:
    if tool == "racecheck":
        return "RACECHECK SUMMARY: 0 hazards" in output or "ERROR SUMMARY: 0 errors" in output
    return "ERROR SUMMARY: 0 errors" in output


def run_tool(tool: str, sanitizer: str, wcfg: WorkerConfig, shape: dict[str, Any], seed: int,
             timeout_s: float) -> dict[str, Any]:
    cmd = [sanitizer, "--tool", tool, "--error-exitcode", str(ERROR_EXIT), "--print-limit", "5",
           "--target-processes", "all", sys.executable, "-m", "harness.sanitize", "--module", str(wcfg.module),
           "--target", str(wcfg.target), "--shape", json.dumps(shape), "--seed", str(seed), *ext_args(wcfg)]
    env = dict(_env(wcfg), PYTORCH_NO_CUDA_MEMORY_CACHING="1")
    wcfg.home.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {}
    if wcfg.drop_privileges and can_drop_privileges(wcfg.module, wcfg.target):
        os.chown(wcfg.home, NOBODY, NOBODY)
        extra = {"user": NOBODY, "group": NOBODY, "extra_groups": []}
    try:
        proc = subprocess.run(cmd, cwd=wcfg.eval_dir, env=env, capture_output=True, text=True, timeout=timeout_s,
                              start_new_session=True, **extra)
    except subprocess.TimeoutExpired:
        return {"ok": False, "report": f"did not finish within {timeout_s:.0f} s", "exit_code": None}
    out = proc.stdout + proc.stderr
    (wcfg.log_path.parent / f"sanitize_{tool}.log").write_text(out[-200000:])
    ok = proc.returncode == 0 and summary_clean(tool, out)
    return {"ok": ok, "exit_code": proc.returncode, "report": "" if ok else first_report(out)}


def run_sanitizers(wcfg: WorkerConfig, shape: dict[str, Any], seed: int, timeout_s: float) -> dict[str, Any]:
    sanitizer = find_sanitizer()
    if sanitizer is None:
        return {"tools": {}, "skipped": "compute-sanitizer not found (CUDA_HOME/bin or PATH)"}
    return {"shape": shape, "tools": {t: run_tool(t, sanitizer, wcfg, shape, seed, timeout_s) for t in TOOLS}}


def _child(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--module", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--shape", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--ext-build")
    p.add_argument("--ext-cache", action="append", default=[])
    a = p.parse_args(argv)
    import torch

    from .spec import generate_inputs, load_module

    target = load_module(a.target, "m3lab_target")
    for key, value in json.loads(a.shape).items():
        setattr(target, key, value)
    if a.ext_build:
        from .extensions import ExtensionHooks

        ExtensionHooks(Path(a.ext_build), [Path(c) for c in a.ext_cache]).install()
    sys.path.insert(0, os.path.dirname(os.path.abspath(a.module)))
    module = load_module(a.module, "m3lab_model_under_test")
    torch.manual_seed(a.seed)
    model = module.ModelNew(*target.get_init_inputs()).cuda().eval()
    inputs = generate_inputs(target, a.seed, "cuda")
    with torch.no_grad():
        model(*inputs)
    torch.cuda.synchronize()
    return 0


if __name__ == "__main__":
    sys.exit(_child())
