"""CUDA C++ candidates on a GPU, in one run: the compile stage and its cache, the CUDA cheat battery (static
checks on and off), compute-sanitizer (memcheck, racecheck), illegal-address isolation, the bundled honest CUDA
candidates' speed-ups, evaluation throughput, and a scripted kernel search through the real loop (`optimize` with
a producer cycling CUDA C++ candidates: faster, wrong, compile error, cheat), stopped half-way and resumed.
Prints a table last; writes kernel_cuda.json and kernel_cuda.md into --out.

    python3 benchmarks/kernel_cuda_bench.py --out DIR [--search-iterations 30]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.kernel.harness.verdict import Verdict  # noqa: E402
from tasks.kernel.runner import EvalFailed, EvalOptions, evaluate_candidate  # noqa: E402
from tasks.kernel.targets import TARGETS_DIR  # noqa: E402

CANDS = TARGETS_DIR / "candidates"
CHEATS = TARGETS_DIR / "cheats"
HONEST_CUDA = {"softmax": "softmax_cuda.py", "layernorm": "layernorm_cuda.py",
               "matmul_bias_gelu": "matmul_bias_gelu_cuda.py"}
STATIC_CHEATS = ["cu01_cuda_mutate_inputs.py", "cu02_cuda_precision_downgrade.py", "cu03_cuda_oob_read.py",
                 "cu04_cuda_side_stream.py", "cu05_cublas_own_stream.py", "cu06_cuda_pointer_repeat.py",
                 "cu07_cuda_illegal_address.py", "cu08_cuda_shared_race.py", "cx02_cpp_static_cache.py",
                 "cx03_cpp_pointer_repeat.py", "cx05_cpp_forge_verdict.py"]
# Dynamic layer alone (static checks off): "reject" must not be accepted; "neutralised" must come out correct
# (the harness waited for the side-stream work before reading results and stopping its clock).
DYNAMIC = {"cu01_cuda_mutate_inputs.py": "reject", "cu02_cuda_precision_downgrade.py": "reject",
           "cu03_cuda_oob_read.py": "reject", "cu06_cuda_pointer_repeat.py": "reject",
           "cu04_cuda_side_stream.py": "neutralised", "cu05_cublas_own_stream.py": "neutralised"}
T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.cache = work / "ext-cache"
        self.n = 0
        self.lock = threading.Lock()

    def opts(self, **kw: Any) -> EvalOptions:
        base = dict(device="cuda", isolation="subprocess", warmup=1, iters=5, timeout_s=600, compile_timeout_s=300,
                    ext_cache=self.cache, timing=False)
        return EvalOptions(**{**base, **kw})  # type: ignore[arg-type]

    def ev(self, target: str, cand: Path, label: str, **kw: Any) -> dict[str, Any]:
        with self.lock:
            self.n += 1
            folder = self.work / f"e{self.n:03d}-{cand.stem}"
        t0 = time.monotonic()
        try:
            v = evaluate_candidate(TARGETS_DIR / f"{target}.py", cand, self.opts(**kw), folder)
        except EvalFailed as exc:
            v = Verdict(device="cuda", errors=[f"no verdict: {exc}"])
        wall = time.monotonic() - t0
        comp = v.compile or {}
        row = {"label": label, "candidate": cand.name, "target": target, "accepted": v.accepted,
               "correct": v.correct, "stage": v.stage, "speedup": v.speedup, "ref_ms": v.ref_ms,
               "cand_ms": v.cand_ms, "aa_spread": v.aa_spread, "wall_s": round(wall, 1), "eval_s": v.eval_s,
               "compile_s": comp.get("stage_s"), "compile_cached": comp.get("cached"),
               "compile_errors": comp.get("errors"), "sanitizer": v.sanitizer,
               "reason": (v.cheats + v.failures + v.errors + [""])[0][:300], "device_name": v.device_name}
        log(f"{label}: {cand.name} -> accepted={v.accepted} stage={v.stage} speedup={v.speedup} "
            f"wall={wall:.1f}s compile={comp.get('stage_s')}/{comp.get('cached')} reason={row['reason'][:120]!r}")
        return row


def battery(b: Bench) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    first = [lambda t=t, c=c: b.ev(t, CANDS / c, "honest-correctness") for t, c in HONEST_CUDA.items()]
    first += [lambda: b.ev("softmax", CHEATS / "cu01_cuda_mutate_inputs.py", "dynamic:reject", static=False),
              lambda: b.ev("softmax", CHEATS / "cu05_cublas_own_stream.py", "dynamic:neutralised", static=False)]
    first += [lambda c=c: b.ev("softmax", CHEATS / c, "static") for c in STATIC_CHEATS]
    with ThreadPoolExecutor(8) as pool:
        rows += list(pool.map(lambda f: f(), first))
    second = [lambda c=c, e=e: b.ev("softmax", CHEATS / c, f"dynamic:{e}", static=False)
              for c, e in DYNAMIC.items() if c not in ("cu01_cuda_mutate_inputs.py", "cu05_cublas_own_stream.py")]
    with ThreadPoolExecutor(4) as pool:
        rows += list(pool.map(lambda f: f(), second))
    return rows


def isolation(b: Bench) -> list[dict[str, Any]]:
    crash = b.ev("softmax", CHEATS / "cu07_cuda_illegal_address.py", "illegal-address", static=False)
    after = b.ev("softmax", CANDS / "softmax_cuda.py", "after-illegal-address")
    return [crash, after]


def sanitizer(b: Bench) -> list[dict[str, Any]]:
    from tasks.kernel.harness.procs import WorkerConfig
    from tasks.kernel.harness.sanitize import find_sanitizer, run_tool
    from tasks.kernel.runner import prepare_eval_dir

    def direct_memcheck() -> dict[str, Any]:
        """The stage itself on an out-of-bounds read that the correctness checks already reject elsewhere."""
        d = b.work / "sanitize-oob"
        prepare_eval_dir(d, TARGETS_DIR / "softmax.py", CHEATS / "cu03_cuda_oob_read.py")
        (d / "logs").mkdir(exist_ok=True)
        wcfg = WorkerConfig(module=d / "cand" / "candidate.py", target=d / "target.py", cls="ModelNew",
                            device="cuda", threads=1, eval_dir=d, log_path=d / "logs" / "sanitize.log",
                            home=d / "logs" / "home_sanitize", drop_privileges=True, ext_build=d / "ext-build",
                            ext_cache=(b.cache.resolve(),), cuda_arch="9.0")
        t0 = time.monotonic()
        res = run_tool("memcheck", find_sanitizer() or "compute-sanitizer", wcfg, {"batch_size": 7, "dim": 1000},
                       1234, 300)
        log(f"memcheck on cu03 (7x1000): ok={res['ok']} report={res['report'][:200]!r}")
        return {"label": "memcheck-direct", "candidate": "cu03_cuda_oob_read.py", "accepted": res["ok"],
                "reason": res["report"][:300], "wall_s": round(time.monotonic() - t0, 1), "sanitizer": res}

    jobs = [direct_memcheck,
            lambda: b.ev("softmax", CHEATS / "cu08_cuda_shared_race.py", "sanitize:race", static=False,
                         sanitize=True),
            lambda: b.ev("softmax", CANDS / "softmax_cuda.py", "sanitize:honest", sanitize=True)]
    with ThreadPoolExecutor(3) as pool:
        return list(pool.map(lambda f: f(), jobs))


def timed(b: Bench, targets: list[str]) -> list[dict[str, Any]]:
    rows = []
    for target, cand in HONEST_CUDA.items():
        if target not in targets:
            continue
        # softmax: sanitize-above 0 = the path a candidate takes when it is about to become a run's best
        extra = {"sanitize_above": 0.0} if target == "softmax" else {}
        rows.append(b.ev(target, CANDS / cand, "honest-timed", timing=True, iters=20, warmup=3, **extra))
    return rows


def throughput(b: Bench, n: int) -> dict[str, Any]:
    """softmax_cuda timed (iters 20), cold (fresh evaluator each time) then warm (tasks/kernel/warm.py), same run."""
    from tasks.kernel.warm import POOL

    out: dict[str, Any] = {}
    for mode in ("cold", "warm"):
        walls = [b.ev("softmax", CANDS / "softmax_cuda.py", f"throughput-{mode}", timing=True, iters=20, warmup=3,
                      warm=mode == "warm")["wall_s"] for _ in range(n)]
        POOL.close()
        per = sum(walls) / len(walls)
        out[mode] = {"evaluations": n, "mean_wall_s": round(per, 2), "evals_per_hour": round(3600 / per),
                     "walls": walls}
    return out


# ---- the real loop: optimize with a scripted producer (benchmarks/kernel_search_soak.py, CUDA pool) ----
def search(work: Path, iterations: int) -> dict[str, Any]:
    """The soak script with the CUDA C++ pool, stopped by `m3lab runs stop` half-way and resumed; its own report
    lands next to the search's run (search/kernel_cuda_search.md/.json)."""
    out = work / "search" / "kernel_cuda_search.md"
    subprocess.run([sys.executable, str(Path(__file__).with_name("kernel_search_soak.py")), "--device", "cuda",
                    "--pool", "cuda", "--iterations", str(iterations), "--iters", "5", "--warm", "--prebuild",
                    "--work", str(work / "search"), "--out", str(out)], check=False)
    res = json.loads(out.with_suffix(".json").read_text())
    return {"iterations": res["iterations"], "contiguous": res["contiguous"], "wall_s": res["wall_s"]["total"],
            "evals_per_hour": res["evals_per_hour"]["with_prebuild"], "best_speedup": res["best"]["speedup"],
            "best_iteration": res["best"]["iteration"], "cheats_accepted": res["cheats_accepted"],
            "accepted_by_label": {k: v["accepted"] for k, v in res["kinds"].items()},
            "submitted_by_label": {k: v["submitted"] for k, v in res["kinds"].items()}}


def markdown(res: dict[str, Any]) -> str:
    out = [f"## CUDA C++ candidates: {res['device_name']} ({res['date']})", ""]
    out += ["| check | candidate | expected | accepted | stage | speed-up | wall s | compile s (cached) | reason |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in res["rows"]:
        sp = f"{r['speedup']:.3f}x" if r.get("speedup") else "-"
        comp = f"{r['compile_s']} ({r['compile_cached']})" if r.get("compile_s") is not None else "-"
        out.append(f"| {r['label']} | {r['candidate']} | {r.get('expected', '')} | {r['accepted']} | "
                   f"{r.get('stage', '')} | {sp} | {r['wall_s']} | {comp} | "
                   f"{str(r['reason']).replace('|', '/').replace(chr(10), ' ')[:100]} |")
    t = res.get("throughput") or {}
    s = res.get("search") or {}
    out += ["", "| metric | value |", "| --- | --- |",
            *[f"| evaluations per hour (softmax_cuda, timed, iters 20, {mode}) | {t[mode]['evals_per_hour']} "
              f"(mean {t[mode]['mean_wall_s']} s; {t[mode]['walls']}) |" for mode in t],
            f"| search: iterations (stopped at half, resumed) | {s.get('iterations')} (contiguous "
            f"{s.get('contiguous')}) |",
            f"| search: evaluations per hour | {s.get('evals_per_hour')} |",
            f"| search: best verified speed-up | {s.get('best_speedup')} (iteration {s.get('best_iteration')}) |",
            f"| search: submitted / accepted by kind | {s.get('submitted_by_label')} / {s.get('accepted_by_label')} |",
            f"| search: cheats accepted | {s.get('cheats_accepted')} |",
            f"| expectation failures | {res['failures']} |"]
    return "\n".join(out) + "\n"


def expected(r: dict[str, Any]) -> tuple[str, bool]:
    label = r["label"]
    if label in ("honest-correctness", "honest-timed", "after-illegal-address", "throughput", "sanitize:honest"):
        ok = r["accepted"] and (label != "honest-timed" or (r.get("speedup") or 0) > 1.0)
        return "accepted" + (", faster" if label == "honest-timed" else ""), ok
    if label == "dynamic:neutralised":
        return "correct (work waited for)", bool(r["correct"])
    if label == "memcheck-direct":
        return "memcheck reports", not r["accepted"] and "Invalid" in r["reason"]
    return "rejected", not r["accepted"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--search-iterations", type=int, default=30)
    p.add_argument("--throughput-n", type=int, default=3)
    p.add_argument("--phases", default="battery,isolation,sanitizer,search,timed,throughput",
                   help="comma-separated subset of the phases")
    p.add_argument("--timed-targets", default=",".join(HONEST_CUDA), help="honest CUDA candidates to time")
    p.add_argument("--search-deadline-s", type=float, default=330.0,
                   help="stop waiting for the search after this many seconds from the start (reported as unfinished)")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="m3lab-cuda-bench-"))
    work.chmod(0o755)  # the candidate's user (nobody) reaches its evaluation folders
    b = Bench(work)
    res: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "rows": []}
    searched: dict[str, Any] = {}

    def run_search() -> None:
        try:
            searched.update(search(work, a.search_iterations))
        except Exception as exc:  # reported in the table; the other phases still count
            import traceback

            searched["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-2000:]}"
            log(f"search failed: {searched['error']}")

    phases = set(a.phases.split(","))
    loop = threading.Thread(target=run_search, daemon=True)
    if "search" in phases:
        loop.start()
    for name, phase in (("battery", battery), ("isolation", isolation), ("sanitizer", sanitizer)):
        if name in phases:
            res["rows"] += phase(b)
    if "search" in phases:
        loop.join(timeout=max(1.0, a.search_deadline_s - (time.monotonic() - T0)))
        if loop.is_alive():
            searched["error"] = f"not finished within {a.search_deadline_s:.0f} s"
        log(f"search done: {json.dumps(searched)[:600]}")
    if "timed" in phases:
        res["rows"] += timed(b, a.timed_targets.split(","))
    res["throughput"] = throughput(b, a.throughput_n) if "throughput" in phases else {}
    res["search"] = searched
    res["device_name"] = next((r["device_name"] for r in res["rows"] if r.get("device_name")), "?")
    failures = []
    for r in res["rows"]:
        r["expected"], ok = expected(r)
        if not ok:
            failures.append(f"{r['label']}:{r['candidate']}")
    if "search" in phases and (searched.get("cheats_accepted") or searched.get("error")):
        failures.append("search")
    res["failures"] = failures
    (a.out / "kernel_cuda.json").write_text(json.dumps(res, indent=1, default=str))
    text = markdown(res)
    (a.out / "kernel_cuda.md").write_text(text)
    print(text, flush=True)
    return 0 if not failures else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    os._exit(main())  # a search still running (past its deadline) must not hold the results back
