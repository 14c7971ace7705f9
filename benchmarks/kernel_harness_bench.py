"""Kernel harness benchmark and battery: A/A spread (reference vs a renamed copy of itself, and the harness's own
reference-vs-reference ratio), evaluations per hour, honest candidates, the planted-cheat battery, and
throughput cold vs warm reference workers vs warm + pre-started candidate workers (`--suite throughput
[--modes cold,warm,prestart] [--in-flight 2]`).

    .venv/bin/python benchmarks/kernel_harness_bench.py --device cpu --suite aa,honest,cheats \
        --md benchmarks/results/kernel_harness.md --json /tmp/kernel_bench.json
Runs with the subprocess isolation by default (the sandbox adds a constant start-up cost, not timing noise)."""
from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks.kernel.harness.spec import read_meta_static  # noqa: E402
from tasks.kernel.harness.verdict import Verdict  # noqa: E402
from tasks.kernel.runner import EvalFailed, EvalOptions, evaluate_candidate  # noqa: E402
from tasks.kernel.targets import BUNDLED, HONEST, TARGETS_DIR  # noqa: E402
from tasks.kernel.targets.battery import CHEAT_CASES, dynamic_ok  # noqa: E402


def _eval(target: Path, cand: Path, opts: EvalOptions, work: Path) -> tuple[Verdict, float]:
    t0 = time.monotonic()
    try:
        v = evaluate_candidate(target, cand, opts, work)
    except EvalFailed as exc:
        v = Verdict(device=opts.device, errors=[str(exc)])
    return v, time.monotonic() - t0


ONLY: set[str] = set()
ONLY_CANDIDATES: set[str] = set()


def _targets(device: str) -> list[str]:
    return [t for t in BUNDLED if device in read_meta_static(TARGETS_DIR / f"{t}.py").get("devices", ["cpu", "cuda"])
            and (not ONLY or t in ONLY)]


def run_aa(device: str, opts: EvalOptions, work: Path) -> list[dict]:
    rows = []
    for name in _targets(device):
        src = (TARGETS_DIR / f"{name}.py").read_text()
        copy = work / f"aa_{name}.py"
        copy.write_text(re.sub(r"\bclass Model\b", "class ModelNew", src))
        v, wall = _eval(TARGETS_DIR / f"{name}.py", copy, opts, work / f"aa_{name}")
        rows.append({"target": name, "accepted": v.accepted, "ref_vs_copy": v.speedup, "aa_spread": v.aa_spread,
                     "ref_ms": v.ref_ms, "wall_s": round(wall, 1), "evals_per_hour": round(3600 / wall, 1),
                     "device_name": v.device_name, "errors": v.errors[:1]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def run_honest(device: str, opts: EvalOptions, work: Path) -> list[dict]:
    rows = []
    for name in _targets(device):
        for cand in [c for c in HONEST[name] if not ONLY_CANDIDATES or c in ONLY_CANDIDATES]:
            timed = not (device == "cpu" and "triton" in cand)  # the Triton interpreter is not worth timing
            o = EvalOptions(**{**opts.__dict__, "timing": timed and opts.timing})
            v, wall = _eval(TARGETS_DIR / f"{name}.py", TARGETS_DIR / "candidates" / cand, o, work / f"h_{cand}")
            rows.append({"target": name, "candidate": cand, "accepted": v.accepted, "speedup": v.speedup,
                         "ref_ms": v.ref_ms, "cand_ms": v.cand_ms, "aa_spread": v.aa_spread, "flags": v.flags,
                         "wall_s": round(wall, 1), "device_name": v.device_name, "summary": v.summary()[:300]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _cheat_row(case, opts: EvalOptions, work: Path) -> dict:  # noqa: ANN001
    target = TARGETS_DIR / f"{case.target}.py"
    cand = TARGETS_DIR / "cheats" / case.file
    timing = case.timed and opts.timing
    full, _ = _eval(target, cand, EvalOptions(**{**opts.__dict__, "timing": timing}), work / f"s_{case.file}")
    dyn_opts = EvalOptions(**{**opts.__dict__, "static": False, "timing": timing})
    if full.stage != "static" and case.dynamic == "reject":
        dyn, wall = full, 0.0  # static found nothing: the full run WAS the dynamic layer alone
    else:
        dyn, wall = _eval(target, cand, dyn_opts, work / f"d_{case.file}")
    ok, why = dynamic_ok(case, dyn)
    first = (full.cheats + full.failures + full.errors + [""])[0]
    return {"cheat": case.file, "rejected_full": not full.accepted, "full_reason": first[:160],
            "dynamic_expectation": case.dynamic, "dynamic_ok": ok, "dynamic": why[:200],
            "dynamic_reason": (dyn.cheats + dyn.failures + dyn.errors + [""])[0][:160], "wall_s": round(wall, 1)}


def run_cheats(opts: EvalOptions, work: Path, parallel: int) -> list[dict]:
    untimed = [c for c in CHEAT_CASES if not c.timed]
    timed = [c for c in CHEAT_CASES if c.timed]
    with ThreadPoolExecutor(max_workers=parallel) as pool:  # correctness-only runs may overlap
        rows = list(pool.map(lambda c: _cheat_row(c, opts, work), untimed))
    rows += [_cheat_row(c, opts, work) for c in timed]  # timed runs alone on the machine
    for r in rows:
        print(json.dumps(r), flush=True)
    return rows


def run_throughput(device: str, opts: EvalOptions, work: Path, n: int, modes: list[str], in_flight: int) -> list[dict]:
    """Evaluations per hour of one honest PyTorch candidate per target (no compile stage: the harness's own cost),
    in the same run: `cold` (a fresh evaluator and reference workers every time), `warm` (one warm evaluator per
    target and GPU keeps the references, tasks/kernel/warm.py; every candidate worker started for its candidate)
    and `prestart` (warm, and the next candidate worker is started while the current evaluation runs),
    `in_flight` at once."""
    from tasks.kernel.warm import POOL, visible_gpus

    rows = []
    for name in _targets(device):
        cand = TARGETS_DIR / "candidates" / f"{name}_torch.py"
        if not cand.is_file():
            continue
        for mode in modes:
            o = EvalOptions(**{**opts.__dict__, "warm": mode != "cold", "prestart": mode == "prestart"})
            t0 = time.monotonic()
            target = TARGETS_DIR / f"{name}.py"
            with ThreadPoolExecutor(max_workers=in_flight) as pool:
                done = list(pool.map(lambda i: _eval(target, cand, o, work / f"t_{mode}_{name}_{i}"), range(n)))
            wall = time.monotonic() - t0
            POOL.close()
            walls = [w for _, w in done]
            later = sorted(walls[1:] or walls)
            vs = [v for v, _ in done]
            steady = vs[1:] or vs  # the first evaluation also starts the warm evaluator
            stages = {k: round(statistics.median(v.stage_s.get(k, 0.0) for v in steady), 3)
                      for k in dict.fromkeys(k for v in steady for k in v.stage_s)}
            rows.append({"target": name, "mode": mode, "in_flight": in_flight, "gpus": len(visible_gpus())
                         if device == "cuda" else 0, "evaluations": n, "accepted": sum(v.accepted for v in vs),
                         "wall_s": round(wall, 1), "evals_per_hour": round(3600 * n / wall),
                         "first_s": round(walls[0], 2), "steady_s": round(later[len(later) // 2], 2),
                         "ref_ms": vs[-1].ref_ms, "speedup": vs[-1].speedup,
                         "aa_spread": max((v.aa_spread or 0) for v in vs), "device_name": vs[-1].device_name,
                         "stage_s": stages, "outside_s": round(statistics.median(w - v.eval_s for v, w in
                                                                                 done[1:] or done), 2),
                         "aa_each": [round(v.aa_spread, 3) if v.aa_spread is not None else None for v in vs],
                         "errors": [e[:200] for v in vs for e in v.errors][:2]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _n(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}x"


def _stages(row: dict) -> str:
    """"import 1.2, correctness 1.3, ..., outside 0.3": the verdict's stage seconds and the host's share."""
    parts = [f"{k} {v:.2f}" for k, v in row.get("stage_s", {}).items() if v >= 0.005]
    return ", ".join([*parts, f"outside {row.get('outside_s', 0):.2f}"])


def markdown(device: str, results: dict) -> str:
    out = [f"## {device}: {results.get('device_name', '')} ({results['host']}, {results['date']})", ""]
    if results.get("aa"):
        out += ["| target | ref vs renamed copy | harness A/A spread | ref ms | s / evaluation | evaluations / h |",
                "| --- | --- | --- | --- | --- | --- |"]
        out += [f"| {r['target']} | {r['ref_vs_copy'] or 0:.3f}x | {r['aa_spread'] or 0:.3f} | {r['ref_ms'] or 0:.4g} "
                f"| {r['wall_s']} | {r['evals_per_hour']} |" for r in results["aa"]]
        out.append("")
    if results.get("honest"):
        out += ["| honest candidate | accepted | speed-up | ref ms | cand ms | A/A |", "| --- | --- | --- | --- | --- | --- |"]
        out += [f"| {r['candidate']} | {r['accepted']} | {_x(r['speedup'])} "
                f"| {_n(r['ref_ms'])} | {_n(r['cand_ms'])} | {_n(r['aa_spread'])} |"
                for r in results["honest"]]
        out.append("")
    if results.get("throughput"):
        out += ["| target | mode | GPUs | in flight | evaluations (accepted) | wall s | evaluations / h | first s "
                "| median s | median stage s (after the first) | ref ms | speed-up | worst A/A |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        out += [f"| {r['target']} | {r['mode']} | {r['gpus']} | {r['in_flight']} | {r['evaluations']} "
                f"({r['accepted']}) | {r['wall_s']} | {r['evals_per_hour']} | {r['first_s']} | {r['steady_s']} "
                f"| {_stages(r)} | {_n(r['ref_ms'])} | {_x(r['speedup'])} | {r['aa_spread']:.3f} |"
                for r in results["throughput"]]
        out.append("")
    if results.get("cheats"):
        out += ["| cheat | rejected (full harness) | dynamic layer alone | why |", "| --- | --- | --- | --- |"]
        out += [f"| {r['cheat']} | {r['rejected_full']} | {r['dynamic_expectation']}: {'ok' if r['dynamic_ok'] else 'FAILED'} "
                f"| {(r['full_reason'] or r['dynamic']).replace('|', '/')[:110]} |" for r in results["cheats"]]
        out.append("")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--suite", default="aa,honest,cheats")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--isolation", default="subprocess", choices=["subprocess", "sandbox"])
    p.add_argument("--json", type=Path)
    p.add_argument("--md", type=Path, help="append a markdown section here")
    p.add_argument("--no-drop", action="store_true", help="candidate worker keeps the evaluator's uid")
    p.add_argument("--candidates", default="", help="comma-separated subset of the honest candidates")
    p.add_argument("--targets", default="", help="comma-separated subset of the bundled targets")
    p.add_argument("--n", type=int, default=6, help="throughput: evaluations per target and mode")
    p.add_argument("--modes", default="cold,warm,prestart",
                   help="throughput: cold (fresh evaluator), warm, prestart (warm + pre-started candidate workers)")
    p.add_argument("--in-flight", type=int, default=1, help="throughput: evaluations at once (one per GPU)")
    a = p.parse_args()
    ONLY.update(t for t in a.targets.split(",") if t)
    ONLY_CANDIDATES.update(c for c in a.candidates.split(",") if c)
    opts = EvalOptions(device=a.device, isolation=a.isolation, iters=a.iters, warmup=a.warmup,
                       drop_privileges=not a.no_drop)
    suites = set(a.suite.split(","))
    work = Path(tempfile.mkdtemp(prefix="kbench-"))
    work.chmod(0o755)  # the candidate worker may run as nobody (when the evaluator is root)
    results: dict = {"host": platform.node(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if "aa" in suites:
        results["aa"] = run_aa(a.device, opts, work)
        results["device_name"] = results["aa"][0]["device_name"] if results["aa"] else ""
    if "cheats" in suites:
        results["cheats"] = run_cheats(opts, work, a.parallel)
    if "throughput" in suites:
        results["throughput"] = run_throughput(a.device, opts, work, a.n, a.modes.split(","), a.in_flight)
        results.setdefault("device_name", results["throughput"][0]["device_name"] if results["throughput"] else "")
    if "honest" in suites:
        results["honest"] = run_honest(a.device, opts, work)
        results.setdefault("device_name", results["honest"][0]["device_name"] if results["honest"] else "")
    md = markdown(a.device, results)
    print(md)
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))
    if a.md:
        with a.md.open("a") as fh:
            fh.write(md + "\n")
    bad = [r for r in results.get("cheats", []) if not (r["rejected_full"] and r["dynamic_ok"])]
    bad += [r for r in results.get("honest", []) if not r["accepted"]]
    bad += [r for r in results.get("throughput", []) if r["accepted"] != r["evaluations"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
