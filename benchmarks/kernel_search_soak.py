"""A long kernel search through the real loop: `optimize` (the same graph, evaluator, compile stage and program
database) with a scripted producer that rotates honest candidates, planted cheats, wrong and broken code; stopped
part-way the way a user stops a run (`m3lab runs stop`, from another process) and resumed from the run directory in
a fresh process. Prints a table (iterations, evaluations per hour, best speed-up, what each kind of submission got)
and checks that no planted cheat was accepted and the program database is complete and contiguous.

Pools: `python` (CPU: PyTorch/Triton candidates and the Python cheats), `cpp` (CPU: a C++ extension, a C++
compile error, C++ cheats), `cuda` (GPU: CUDA C++ candidates - a naive and a block-per-row kernel, a wrong one, a
compile error, a cheat that zeroes its input, C++/CUDA cheats the static scan rejects).

    python benchmarks/kernel_search_soak.py [--iterations 200] [--pool python] [--device cpu]
    python benchmarks/kernel_search_soak.py --device cuda --pool cuda --iterations 32 --stop-at 16 --iters 5 --warm

Phases (`--phase`): `start` creates the run and drives it until the stop, `resume` continues it to its budget,
`report` writes the tables; `all` (default) runs start and resume as two child processes, then the report. With
--prebuild the compile-stage builds of the pool's distinct C++/CUDA sources run in parallel, once, into the run's
own compile cache before the first iteration (the loop evaluates one candidate at a time); each is a real
evaluation whose verdict is reported.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.kernel.targets import TARGETS_DIR  # noqa: E402

CANDS, CHEATS = TARGETS_DIR / "candidates", TARGETS_DIR / "cheats"

# ---- the pools: (label, code); the label's kind (before ':') is what the report counts ----
WRONG_PY = "import torch\nclass ModelNew(torch.nn.Module):\n    def forward(self, x):\n        return x[0]\n"

BROKEN_CUDA = '''"""Compile error: a missing semicolon in the CUDA source."""
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

CUDA = r"""
#include <torch/extension.h>
torch::Tensor twice(torch::Tensor x) { return x * 2 }
"""
_ext = load_inline(name="m3lab_broken_cuda", cpp_sources="torch::Tensor twice(torch::Tensor x);", cuda_sources=CUDA,
                   functions=["twice"])


class ModelNew(nn.Module):
    def forward(self, x):
        return _ext.twice(x)
'''

BROKEN_CPP = '''"""Compile error: a missing semicolon in the C++ source."""
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

CPP = r"""
#include <torch/extension.h>
torch::Tensor twice(torch::Tensor x) { return x * 2 }
"""
_ext = load_inline(name="m3lab_broken_cpp", cpp_sources=CPP, functions=["twice"])


class ModelNew(nn.Module):
    def forward(self, x):
        return _ext.twice(x)
'''

NAIVE_CUDA = '''"""Honest but naive CUDA C++ softmax: one thread per row (each warp reads 32 rows at once: uncoalesced, and a
4096-row matrix keeps only 4096 threads busy). Correct and slower than the block-per-row kernel."""
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

CUDA_SOURCE = r"""
#include <torch/extension.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <cmath>

__global__ void softmax_row_per_thread(const float* __restrict__ x, float* __restrict__ y, int rows, int cols) {
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    const float* row = x + static_cast<size_t>(r) * cols;
    float* out = y + static_cast<size_t>(r) * cols;
    float m = -INFINITY;
    for (int c = 0; c < cols; ++c) m = fmaxf(m, row[c]);
    float s = 0.f;
    for (int c = 0; c < cols; ++c) s += expf(row[c] - m);
    const float inv = 1.f / s;
    for (int c = 0; c < cols; ++c) out[c] = expf(row[c] - m) * inv;
}

torch::Tensor softmax_rows(torch::Tensor x) {
    TORCH_CHECK(x.is_cuda() && x.dim() == 2 && x.scalar_type() == torch::kFloat32, "2-D float32 CUDA tensor");
    auto in = x.contiguous();
    auto out = torch::empty_like(in);
    const int rows = in.size(0), cols = in.size(1);
    if (rows == 0 || cols == 0) return out;
    const int threads = 128;
    softmax_row_per_thread<<<(rows + threads - 1) / threads, threads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        in.data_ptr<float>(), out.data_ptr<float>(), rows, cols);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return out;
}
"""

_ext = load_inline(name="m3lab_softmax_naive", cpp_sources="torch::Tensor softmax_rows(torch::Tensor x);",
                   cuda_sources=CUDA_SOURCE, functions=["softmax_rows"], extra_cuda_cflags=["-O3"])


class ModelNew(nn.Module):
    def forward(self, x):
        return _ext.softmax_rows(x)
'''

_LAST_PASS = "for (int c = threadIdx.x; c < cols; c += blockDim.x) out[c] = expf(row[c] - m) * inv;"


def _edit(source: str, old: str, new: str) -> str:
    """`source` with `old` replaced once; the bundled file must still hold `old` (a silent no-op would turn a
    planted variant into a copy of the honest candidate)."""
    if source.count(old) != 1:
        raise ValueError(f"variant anchor not found once in the bundled candidate: {old!r}")
    return source.replace(old, new)


def cuda_variants() -> dict[str, str]:
    """Variants of the bundled softmax_cuda: a wrong one (epsilon in the denominator) and a planted cheat that zeroes
    the caller's input after reading it (it passes the static scan; the dynamic layer must catch it)."""
    honest = (CANDS / "softmax_cuda.py").read_text()
    wrong = _edit(honest, "const float inv = 1.f / block_reduce<false>(s, shared);",
                  "const float inv = 1.f / (block_reduce<false>(s, shared) + 1e-3f);")
    zeroing = _edit(honest, _LAST_PASS, _LAST_PASS + "\n    __syncthreads();\n"
                    "    for (int c = threadIdx.x; c < cols; c += blockDim.x) const_cast<float*>(row)[c] = 0.f;")
    zeroing = _edit(zeroing, '"""Honest CUDA C++ candidate', '"""Planted cheat: zeroes its input after reading it. '
                    'Otherwise the honest CUDA C++ candidate')
    return {"wrong": wrong, "zero_input": zeroing}


def candidates(pool: str, target: str) -> list[tuple[str, str]]:
    """(label, code) the scripted producer cycles through, in order; label = "kind:name" with kind one of honest,
    wrong, compile_error, cheat."""
    if pool == "python":
        honest = sorted(p for p in CANDS.glob(f"{target}_*.py") if not p.stem.endswith(("_cpp", "_cuda")))
        cheats = sorted(CHEATS.glob("c[0-9]*.py"))[:6]
        found = [(f"honest:{p.stem}", p.read_text()) for p in honest]
        found += [(f"cheat:{p.stem}", p.read_text()) for p in cheats]
        return found + [("wrong:returns_a_row", WRONG_PY)]
    if target != "softmax":
        raise SystemExit(f"the {pool} pool is written for the softmax target, not {target}")
    if pool == "cpp":
        return [("honest:softmax_cpp", (CANDS / "softmax_cpp.py").read_text()),
                ("cheat:cx03_cpp_pointer_repeat", (CHEATS / "cx03_cpp_pointer_repeat.py").read_text()),
                ("compile_error:cpp_missing_semicolon", BROKEN_CPP),
                ("wrong:returns_a_row", WRONG_PY),
                ("cheat:cx05_cpp_forge_verdict", (CHEATS / "cx05_cpp_forge_verdict.py").read_text())]
    if pool == "cuda":
        variants = cuda_variants()
        return [("honest:softmax_cuda_naive", NAIVE_CUDA),
                ("cheat:cx03_cpp_pointer_repeat", (CHEATS / "cx03_cpp_pointer_repeat.py").read_text()),
                ("wrong:softmax_cuda_eps", variants["wrong"]),
                ("compile_error:cuda_missing_semicolon", BROKEN_CUDA),
                ("honest:softmax_cuda", (CANDS / "softmax_cuda.py").read_text()),
                ("cheat:cuda_zero_input", variants["zero_input"]),
                ("cheat:cu05_cublas_own_stream", (CHEATS / "cu05_cublas_own_stream.py").read_text()),
                ("cheat:cx05_cpp_forge_verdict", (CHEATS / "cx05_cpp_forge_verdict.py").read_text())]
    raise SystemExit(f"unknown pool {pool!r} (python, cpp, cuda)")


def label_sources(run: Path, pool: list[tuple[str, str]]) -> dict[int, str]:
    """Which pool entry each iteration submitted (from the program database's saved sources)."""
    by_code = {code.strip(): label for label, code in pool}
    sources = sorted((run / "artifacts" / "kernel" / "sources").glob("*.py"))
    return {int(p.stem): by_code.get(p.read_text().strip(), "unknown") for p in sources}


# ---- the scripted producer ----
def models(pool: list[tuple[str, str]], work: Path):  # noqa: ANN201 - a ModelFactory
    from langchain_core.messages import AIMessage

    from tests.orchestrator.support import PolicyChatModel, Script

    def policy(messages: list) -> AIMessage:
        # Iteration i submits pool[(i - 1) % len]: i - 1 iterations are in the program database. Read from the run
        # (not the conversation: a run stopped by the user ends before its last verdict reaches the producer).
        sources = _run_dir(work) / "artifacts" / "kernel" / "sources"
        checked = len(list(sources.glob("*.py"))) if sources.is_dir() else 0
        _, code = pool[checked % len(pool)]
        return AIMessage(content=f"```python\n{code}```\n")

    def make(role, endpoint, thinking, max_tokens=None):  # noqa: ANN001, ANN202
        if role == "producer":
            return PolicyChatModel(messages=iter(()), policy=policy)
        return Script().factory()(role, endpoint, thinking)
    return make


# ---- phases ----
def _settings(work: Path, iterations: int):  # noqa: ANN202
    from orchestrator.config import BudgetLimits, LoopSettings, Settings
    from serving.client import ModelEndpoint

    endpoint = ModelEndpoint(retry_for_s=0.5)
    return Settings(producer=endpoint, verifier=endpoint, runs_dir=work / "runs",
                    budget=BudgetLimits(max_iterations=iterations), loop=LoopSettings(stuck_patience=10_000))


def _task(args: argparse.Namespace):  # noqa: ANN202
    """The task `m3lab optimize TARGET --device D --isolation I --iters N [--warm]` builds."""
    from tasks.kernel.runner import EvalOptions
    from tasks.kernel.task import KernelTask

    return KernelTask(target=args.target, device=args.device, isolation=args.isolation,
                      options=EvalOptions(iters=args.iters, warm=args.warm), sanitize_best=not args.no_sanitize_best)


def _run_dir(work: Path) -> Path:
    return work / "runs" / (work / "run_id").read_text().strip()


def prebuild(task: Any, run: Path, pool: list[tuple[str, str]], work: Path) -> dict[str, Any]:
    """Evaluate each distinct compiling source once, all at once, untimed, into the run's compile cache (the same
    cache, keyed by the same candidate digest, that the loop's evaluations look in)."""
    from tasks.kernel.runner import EvalFailed, evaluate_candidate

    options = dataclasses.replace(task._options(run), timing=False, sanitize_above=None, warm=False)
    sources = {label: code for label, code in pool if "load_inline" in code}

    def one(label: str) -> dict[str, Any]:
        folder = work / "prebuild" / label.replace(":", "-")  # the candidate alone, as in the run's workspace
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "candidate.py").write_text(sources[label])
        started = time.monotonic()
        try:
            verdict = evaluate_candidate(Path(task.target), folder / "candidate.py", options,
                                         work / "prebuild-eval" / folder.name)
            summary, comp = verdict.summary(), verdict.compile or {}
        except EvalFailed as exc:
            summary, comp = f"no verdict: {exc}", {}
        return {"label": label, "wall_s": round(time.monotonic() - started, 1), "summary": summary[:300],
                "compile_s": comp.get("stage_s"), "compile_errors": comp.get("errors")}

    started = time.monotonic()
    with ThreadPoolExecutor(max(1, len(sources))) as threads:
        rows = list(threads.map(one, sources))
    for row in rows:
        print(f"prebuild {row['label']}: {row['wall_s']} s: {row['summary'][:160]}", flush=True)
    return {"wall_s": round(time.monotonic() - started, 1), "builds": rows}


def stop_when(run: Path, at: int, config: Path, done: threading.Event) -> dict[str, Any]:
    """Once `at` iterations are checked, stop the run as a user does: `m3lab runs stop ID` in another process."""
    record: dict[str, Any] = {}

    def watch() -> None:
        sources = run / "artifacts" / "kernel" / "sources"
        while not done.is_set():
            checked = len(list(sources.glob("*.py"))) if sources.is_dir() else 0
            if checked >= at:
                command = [sys.executable, "-c", "from orchestrator.cli import main; main()", "runs", "stop",
                           run.name, "--config", str(config)]
                proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                                      env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                          [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])},
                                      timeout=120)
                record.update(after_checked=checked, exit_code=proc.returncode,
                              output=(proc.stdout + proc.stderr).strip()[-300:], at=time.time())
                print(f"stop requested after {checked} checked iterations: {record['output']}", flush=True)
                return
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()
    return record


def phase_start(args: argparse.Namespace, pool: list[tuple[str, str]]) -> None:
    from orchestrator.runner import start_run
    from tests.orchestrator.support import local_opener

    work = args.work
    config = work / "m3lab.toml"
    config.write_text(f"runs_dir = {json.dumps(str(work / 'runs'))}\n")  # what `m3lab runs stop` reads
    task = _task(args)
    done = threading.Event()
    info: dict[str, Any] = {"prebuild": None, "stop": {}}

    def created(run: Any) -> None:
        (work / "run_id").write_text(run.id)
        info["created_at"] = time.time()
        if args.seed_cache:  # finished builds of these sources from an earlier run (same digests, same keys)
            shutil.copytree(args.seed_cache, run.path / "logs" / "kernel" / "ext-cache", dirs_exist_ok=True)
            info["seeded_from"] = str(args.seed_cache)
        if args.prebuild:
            info["prebuild"] = prebuild(task, run.path, pool, work)
        info["stop"] = stop_when(run.path, args.stop_at, config, done)
        info["loop_started_at"] = time.time()

    started = time.time()
    try:
        start_run(task, _settings(work, args.iterations), models=models(pool, work), open_sandbox=local_opener,
                  on_created=created)
    finally:
        done.set()
    meta = json.loads((_run_dir(work) / "run.json").read_text())
    info.update(started_at=started, ended_at=time.time(), status=meta["status"], stop_reason=meta.get("stop_reason"),
                iteration=meta.get("iteration"))
    (work / "start.json").write_text(json.dumps(info, indent=1, default=str))
    print(f"start phase: {meta['status']} ({meta.get('stop_reason')}) at iteration {meta.get('iteration')}", flush=True)


def phase_resume(args: argparse.Namespace, pool: list[tuple[str, str]]) -> None:
    from orchestrator.runner import resume_run
    from tests.orchestrator.support import local_opener

    started = time.time()
    run = _run_dir(args.work)
    resume_run(run, _settings(args.work, args.iterations), models=models(pool, args.work), open_sandbox=local_opener)
    meta = json.loads((run / "run.json").read_text())
    (args.work / "resume.json").write_text(json.dumps({"started_at": started, "ended_at": time.time(),
                                                       "status": meta["status"], "iteration": meta.get("iteration"),
                                                       "stop_reason": meta.get("stop_reason")}, indent=1))
    print(f"resume phase: {meta['status']} ({meta.get('stop_reason')}) at iteration {meta.get('iteration')}", flush=True)


# ---- the report ----
def _reason(verdict: dict[str, Any]) -> str:
    comp = verdict.get("compile") or {}
    if comp.get("errors"):
        first = comp["errors"][0]  # the compiler's own first error, as the producer saw it
        return f"compile: {first['file']}:{first['line']}: {first['message']}" if isinstance(first, dict) \
            else f"compile: {first}"
    found = verdict.get("cheats", []) + verdict.get("failures", []) + verdict.get("errors", [])
    return found[0] if found else ""


def iteration_rows(run: Path, labels: dict[int, str]) -> list[dict[str, Any]]:
    """One row per checked iteration, from the program database's saved verdicts."""
    from tasks.kernel import database

    table = database.load_table(run)
    accepted = dict(zip(table["iteration"].astype(int), table["accepted"].astype(bool), strict=True))
    rows = []
    for path in sorted((database.kernel_dir(run) / "verdicts").glob("*.json")):
        it, v = int(path.stem), json.loads(path.read_text())
        comp = v.get("compile") or {}
        rows.append({"iteration": it, "label": labels.get(it, "?"), "accepted": accepted.get(it, False),
                     "cheat_flagged": bool(v.get("cheats")), "stage": v.get("stage"), "speedup": v.get("speedup"),
                     "eval_s": v.get("eval_s"), "compile_s": comp.get("stage_s"), "compile_cached": comp.get("cached"),
                     "sanitized": v.get("sanitizer") is not None, "device_name": v.get("device_name"),
                     "reason": " ".join(_reason(v).split())[:240]})
    return rows


def summarise(args: argparse.Namespace, pool: list[tuple[str, str]]) -> dict[str, Any]:
    import pandas as pd

    run = _run_dir(args.work)
    start = json.loads((args.work / "start.json").read_text())
    resume = json.loads((args.work / "resume.json").read_text())
    meta = json.loads((run / "run.json").read_text())
    table = pd.read_csv(run / "artifacts/kernel/candidates.csv")
    labels = label_sources(run, pool)
    rows = iteration_rows(run, labels)
    frame = pd.DataFrame(rows)
    frame["kind"] = frame["label"].str.split(":").str[0]
    loop_s = (start["ended_at"] - start.get("loop_started_at", start["started_at"])) \
        + (resume["ended_at"] - resume["started_at"])
    total_s = (start["ended_at"] - start["started_at"]) + (resume["ended_at"] - resume["started_at"])
    kinds = {}
    for kind, group in frame.groupby("kind"):
        kinds[kind] = {"submitted": len(group), "accepted": int(group["accepted"].sum()),
                       "flagged_as_cheat": int(group["cheat_flagged"].sum()),
                       "by_stage": {k: int(n) for k, n in group["stage"].value_counts().items()},
                       "first_reason": next((r for r in group["reason"] if r), "")}
    cheats = frame[frame["kind"] == "cheat"]
    best_it = meta.get("best_iteration") or 0
    stop_at = start.get("iteration")
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "host": platform.node(),
        "device": args.device, "device_name": next((r["device_name"] for r in rows if r.get("device_name")), ""),
        "target": args.target, "pool": args.pool, "iters": args.iters, "warm": args.warm,
        "sanitize_best": not args.no_sanitize_best, "run": run.name,
        "iterations": int(len(table)), "budget": args.iterations,
        "contiguous": list(table["iteration"]) == list(range(1, len(table) + 1)),
        "stopped": {"status": start["status"], "reason": start["stop_reason"], "at_iteration": stop_at,
                    "requested": start.get("stop", {})},
        "resumed": {"status": resume["status"], "reason": resume["stop_reason"], "at_iteration": resume["iteration"],
                    "pause_s": round(resume["started_at"] - start["ended_at"], 1)},
        "rows_after_resume_contiguous": [r["iteration"] for r in rows if r["iteration"] > (stop_at or 0)]
        == list(range((stop_at or 0) + 1, len(rows) + 1)),
        "prebuild": start.get("prebuild"), "seeded_from": start.get("seeded_from"),
        "wall_s": {"total": round(total_s, 1), "loop": round(loop_s, 1)},
        "evals_per_hour": {"loop": round(len(table) / loop_s * 3600), "with_prebuild": round(len(table) / total_s * 3600)},
        "best": {"speedup": meta.get("best_score"), "iteration": best_it, "label": labels.get(best_it, "?")},
        "kinds": kinds,
        "cheats_accepted": int(cheats["accepted"].sum()),
        "compile_cache_hits": int((frame["compile_cached"] == True).sum()),  # noqa: E712 - None = no compile
        "compile_first_builds_in_loop": int((frame["compile_cached"] == False).sum()),  # noqa: E712
        "sanitizer_runs": int(frame["sanitized"].sum()),
        "rows": rows,
    }


def markdown(res: dict[str, Any]) -> str:
    best, stop, resume = res["best"], res["stopped"], res["resumed"]
    pre = res.get("prebuild")
    lines = [f"# Kernel search through the real loop: {res['target']} on {res['device']} "
             f"({res['device_name'] or res['host']}, {res['date']})", "",
             f"Scripted producer, pool `{res['pool']}`; every candidate judged by the real evaluator (subprocess "
             f"isolation, iters {res['iters']}, warm references {res['warm']}, sanitizer on a new best "
             f"{res['sanitize_best']}), run `{res['run']}`.", "",
             "| metric | value |", "| --- | --- |",
             f"| iterations (budget) | {res['iterations']} ({res['budget']}); program database contiguous "
             f"{res['contiguous']} |",
             f"| stopped by `m3lab runs stop` | after iteration {stop['at_iteration']} ({stop['status']}: "
             f"{stop['reason']}) |",
             f"| resumed (fresh process) | to iteration {resume['at_iteration']} ({resume['status']}: "
             f"{resume['reason']}); rows after the resume contiguous {res['rows_after_resume_contiguous']} |",
             f"| wall time: loop / with prebuild | {res['wall_s']['loop']:.0f} s / {res['wall_s']['total']:.0f} s |",
             f"| evaluations per hour: loop / with prebuild | {res['evals_per_hour']['loop']} / "
             f"{res['evals_per_hour']['with_prebuild']} |",
             f"| best verified speed-up | {best['speedup']:.3f}x at iteration {best['iteration']} ({best['label']}) |"
             if best["speedup"] else "| best verified speed-up | none accepted |",
             f"| cheats accepted | **{res['cheats_accepted']}** |",
             f"| compile stage in the loop: cache hits / first builds | {res['compile_cache_hits']} / "
             f"{res['compile_first_builds_in_loop']} |",
             f"| compute-sanitizer runs (new best) | {res['sanitizer_runs']} |"]
    if pre:
        built = [b for b in pre["builds"] if b["compile_s"] is not None]
        stages = ", ".join(f"{b['label']} {b['compile_s']:.0f} s" for b in built)
        seeded = " (cache seeded from an earlier run)" if res.get("seeded_from") else ""
        lines.append(f"| prebuild: {len(pre['builds'])} sources evaluated in parallel, {len(built)} reached the compile "
                     f"stage{seeded} | {pre['wall_s']:.0f} s (compile stages: {stages}) |")
    lines += ["", "| kind | submitted | accepted | flagged as cheat | stage reached | first reason |",
              "| --- | --- | --- | --- | --- | --- |"]
    for kind, k in res["kinds"].items():
        stages = ", ".join(f"{s} {n}" for s, n in k["by_stage"].items())
        lines.append(f"| {kind} | {k['submitted']} | {k['accepted']} | {k['flagged_as_cheat']} | {stages} | "
                     f"{_cell(k['first_reason'], 160)} |")
    lines += ["", "| it | submitted | accepted | stage | speed-up | eval s | compile s (cached) | reason |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in res["rows"]:
        sp = f"{r['speedup']:.3f}x" if r["speedup"] else "-"
        comp = f"{r['compile_s']:.1f} ({r['compile_cached']})" if r["compile_s"] is not None else "-"
        sanitized = " +sanitizer" if r["sanitized"] else ""
        lines.append(f"| {r['iteration']} | {r['label']} | {r['accepted']} | {r['stage']}{sanitized} | {sp} | "
                     f"{r['eval_s']:.1f} | {comp} | {_cell(r['reason'], 110)} |")
    return "\n".join(lines) + "\n"


def _cell(text: str, width: int) -> str:
    return str(text).replace("|", "/").replace("\n", " ")[:width]


def phase_report(args: argparse.Namespace, pool: list[tuple[str, str]]) -> int:
    res = summarise(args, pool)
    text = markdown(res)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1, default=str))
    print(text, flush=True)
    problems = []
    if res["cheats_accepted"]:
        problems.append(f"{res['cheats_accepted']} planted cheats accepted")
    if not res["contiguous"] or res["iterations"] != args.iterations:
        problems.append(f"program database has {res['iterations']} rows, contiguous {res['contiguous']}")
    if res["stopped"]["status"] != "stopped" or not res["stopped"]["requested"]:
        problems.append("the run was not stopped by `m3lab runs stop` before its budget")
    for problem in problems:
        print(f"FAILED: {problem}", flush=True)
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--stop-at", type=int, default=None, help="stop after this many (default: half)")
    parser.add_argument("--target", default="softmax")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--pool", default="python", choices=["python", "cpp", "cuda"])
    parser.add_argument("--isolation", default="subprocess", choices=["subprocess", "sandbox"])
    parser.add_argument("--iters", type=int, default=4, help="timed calls per model per timing shape")
    parser.add_argument("--warm", action="store_true", help="warm reference workers (m3lab optimize --warm)")
    parser.add_argument("--no-sanitize-best", action="store_true", help="CUDA: skip compute-sanitizer on a new best")
    parser.add_argument("--prebuild", action="store_true", help="build the pool's C++/CUDA sources in parallel first")
    parser.add_argument("--seed-cache", type=Path, default=None,
                        help="copy this compile cache (an earlier run's logs/kernel/ext-cache) into the new run's")
    parser.add_argument("--phase", default="all", choices=["all", "start", "resume", "report"])
    parser.add_argument("--work", type=Path, default=None, help="folder of the run (default: a new temporary one)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "kernel_search_soak.md",
                        help="markdown report (a .json beside it)")
    args = parser.parse_args()
    args.stop_at = args.stop_at or args.iterations // 2
    if not 0 < args.stop_at < args.iterations:
        parser.error("--stop-at must lie between 0 and --iterations")
    pool = candidates(args.pool, args.target)
    if args.work is None:
        args.work = Path(tempfile.mkdtemp(prefix="m3lab-soak-"))
    args.work.mkdir(parents=True, exist_ok=True)
    args.work.chmod(0o755)  # the candidate's user (nobody, when the evaluator is root) reaches the evaluations
    if args.phase == "start":
        phase_start(args, pool)
    elif args.phase == "resume":
        phase_resume(args, pool)
    elif args.phase == "report":
        return phase_report(args, pool)
    else:  # start and resume in two processes: the resumed loop keeps nothing in memory from the first
        base = [sys.executable, str(Path(__file__).resolve()), *_passed(args)]
        for phase in ("start", "resume"):
            code = subprocess.run([*base, "--phase", phase]).returncode
            if code:
                print(f"FAILED: the {phase} phase exited with {code}", flush=True)
                return code
        return phase_report(args, pool)
    return 0


def _passed(args: argparse.Namespace) -> list[str]:
    """This run's options as arguments for a child phase."""
    out = ["--iterations", str(args.iterations), "--stop-at", str(args.stop_at), "--target", args.target,
           "--device", args.device, "--pool", args.pool, "--isolation", args.isolation, "--iters", str(args.iters),
           "--work", str(args.work), "--out", str(args.out)]
    if args.seed_cache:
        out += ["--seed-cache", str(args.seed_cache)]
    flags = {"--warm": args.warm, "--no-sanitize-best": args.no_sanitize_best, "--prebuild": args.prebuild}
    return out + [flag for flag, on in flags.items() if on]


if __name__ == "__main__":
    sys.exit(main())
