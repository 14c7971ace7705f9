"""Where the default prefill's time goes: per-kernel device time of ``sparse_attention_triton`` under torch.profiler.

For each selection kind (the indexer's selections on random inputs, synthetic f = 0.9 / 1.0, the seeds msa_bench and
tree_compare use) the default call is timed alone (``do_bench``) and then profiled over ``--calls`` calls; the table
lists every kernel's device time per call, their sum, and the wall time the sum leaves unexplained; then the profiled
calls' timeline (their span per call, the time some kernel ran, the idle stretches and the kernels around them) and
the same calls timed back to back without the profiler and without do_bench's L2 flush, which tells idle device time
(launch gaps, host work) from the difference between two measurements. This is the stage breakdown the NOTES'
"outside the step" estimates come from:

    PYTHONPATH=$PWD python -m kernels.bench.prefill_profile --n 131072 --json $OUT/profile.json

``--fp8-step V`` profiles the FP8 step instead (v18: an fp8 e4m3 copy of the cache, ``fp8_step=True``, variant V);
``--unfused`` turns the tile-outer step's fused merge off (``fuse_merge=False``); ``--variant V`` runs the bf16 step's
variant V as the default (``kernels.msa.cuda.DEFAULT_VARIANT``); ``--int8`` takes int8 KV-outer partials
(``partial_dtype=torch.int8``; else bf16 ones).
"""
from __future__ import annotations

import argparse
import contextlib
import json
from collections import defaultdict
from pathlib import Path

import torch

from kernels.bench.tree_compare import HEAD_DIM, HEADS, KINDS, KV_HEADS, bench_ms, selection

Launch = tuple[float, float, str]
"""One kernel on the device's timeline: start and end (microseconds), short name."""


def kernel_times(fn, calls: int) -> tuple[dict[str, float], dict]:  # noqa: ANN001 - a callable launching GPU work
    """Device milliseconds per call of each kernel ``fn`` launches (summed over its launches within one call), and
    the profiled calls' ``timeline`` (where the device sat idle between them)."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    per_kernel: dict[str, float] = defaultdict(float)
    launches: list[Launch] = []
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA and event.device_time_total > 0:
            per_kernel[short_name(event.name)] += event.device_time_total / 1000.0 / calls
            launches.append((event.time_range.start, event.time_range.end, short_name(event.name)))
    return dict(sorted(per_kernel.items(), key=lambda kv: -kv[1])), timeline(launches, calls)


def back_to_back_ms(fn, calls: int) -> float:  # noqa: ANN001 - a callable launching GPU work
    """Milliseconds per call of ``calls`` calls queued back to back between two events, as the profiler sees them."""
    fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / calls


def timeline(launches: list[Launch], calls: int, most: int = 4) -> dict:
    """Per call: the span from the first kernel's start to the last one's end, the time some kernel ran (their
    union: overlapping kernels count once), the idle rest, and the ``most`` largest idle stretches summed by the pair
    of kernels around them — where the wall time a do_bench reports and the kernels' sum part (a host behind the
    device, a sync, or no idle at all: then the difference is the clock between the two measurements)."""
    if not launches:
        return {"span_ms": 0.0, "busy_ms": 0.0, "idle_ms": 0.0, "gaps": []}
    ordered = sorted(launches)
    busy, reach = 0.0, ordered[0][0]
    last_name = ordered[0][2]
    gaps: dict[tuple[str, str], float] = defaultdict(float)
    for start, end, name in ordered:
        if start > reach:
            gaps[(last_name, name)] += start - reach
        busy += max(0.0, end - max(start, reach))
        if end >= reach:
            reach, last_name = end, name
    span = reach - ordered[0][0]
    top = sorted(gaps.items(), key=lambda kv: -kv[1])[:most]
    return {"span_ms": span / 1000.0 / calls, "busy_ms": busy / 1000.0 / calls,
            "idle_ms": (span - busy) / 1000.0 / calls,
            "gaps": [{"after": a, "before": b, "ms": us / 1000.0 / calls} for (a, b), us in top]}


def short_name(name: str) -> str:
    """A kernel's name without its template arguments and parameter list (CUDA C++ names are long)."""
    for cut in ("<", "("):
        name = name.split(cut, 1)[0]
    return name.removeprefix("void ").strip()[:60]


def profile_kinds(n: int, kinds: list[str], calls: int, fp8_step: int | None = None,
                  fuse_merge: bool | None = None, variant: int | None = None, int8: bool = False) -> list[dict]:
    from kernels.msa import cuda
    from kernels.msa.inputs import make_case, quantize_kv_fp8
    from kernels.msa.prefill import sparse_attention_triton

    case = make_case([n], [n], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=n)
    out = torch.empty_like(case.q)
    kv_cache, k_scale, v_scale = case.kv_cache, 1.0, 1.0
    pinned = contextlib.ExitStack()  # the defaults the step reads at each call, for this function's calls only
    if variant is not None:
        pinned.enter_context(cuda.variant_as_default(16, False, variant))
    if fp8_step is not None:
        kv_cache, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
        pinned.enter_context(cuda.variant_as_default(16, True, fp8_step))
    rows = []
    with pinned:
        for kind in kinds:
            sel = selection(case, kind, n)

            def attend(sel: torch.Tensor = sel) -> None:
                sparse_attention_triton(case.q, kv_cache, sel, case.block_table, case.query_start_loc,
                                        case.seq_lens, HEAD_DIM ** -0.5, out, fuse_merge=fuse_merge, k_scale=k_scale,
                                        v_scale=v_scale, fp8_step=fp8_step is not None,
                                        partial_dtype=torch.int8 if int8 else torch.bfloat16)

            wall = bench_ms(attend)
            kernels, line = kernel_times(attend, calls)
            line["back_to_back_ms"] = back_to_back_ms(attend, calls)
            rows.append({"n": n, "kind": kind, "wall_ms": wall, "kernels_ms": kernels, "timeline": line})
    return rows


def print_table(rows: list[dict]) -> None:
    for row in rows:
        total = sum(row["kernels_ms"].values())
        print(f"\nN={row['n'] // 1024}K {row['kind']}: wall {row['wall_ms']:.2f} ms, kernels {total:.2f} ms, "
              f"outside kernels {row['wall_ms'] - total:.2f} ms")
        print("| kernel | ms per call | share of wall |")
        print("| --- | --- | --- |")
        for name, ms in row["kernels_ms"].items():
            print(f"| {name} | {ms:.3f} | {ms / row['wall_ms']:.1%} |")
        line = row.get("timeline")
        if line:
            print(f"profiled calls: span {line['span_ms']:.3f} ms per call, a kernel running {line['busy_ms']:.3f}, "
                  f"idle {line['idle_ms']:.3f}; back to back unprofiled {line.get('back_to_back_ms', 0.0):.3f} ms")
            for gap in line["gaps"]:
                print(f"  idle {gap['ms'] * 1000:.1f} us per call after {gap['after']} before {gap['before']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=131072)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--calls", type=int, default=5, help="profiled calls per kind")
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--fp8-step", type=int, help="profile the FP8 step (fp8 cache) with this variant")
    parser.add_argument("--unfused", action="store_true", help="fuse_merge=False")
    parser.add_argument("--variant", type=int, help="the bf16 step's variant (default: kernels.msa.cuda's)")
    parser.add_argument("--int8", action="store_true", help="int8 KV-outer partials (partial_dtype=torch.int8)")
    args = parser.parse_args()
    rows = profile_kinds(args.n, [k for k in args.kinds.split(",") if k], args.calls, args.fp8_step,
                         False if args.unfused else None, args.variant, args.int8)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print_table(rows)


if __name__ == "__main__":
    main()
