"""v14u: msa_bench's process vs a fresh one, and the prefill workspace, at 128K on the indexer's selections.

NOTES v13: the same tree's default prefill took 37.3 ms inside ``msa_bench.py`` (after its other rows) and 32.6 ms
in ``tree_compare.py``'s fresh processes; int8 parts (half the partial bytes) showed no gap. One call measures why:

    python -m kernels.bench.workspace_bench --repeat 3 --out $OUT/ws.jsonl

This process first runs msa_bench's 128K sequence (ceilings, our indexer, v6, KV-outer only, the v9 default; their
outputs kept alive, their partials freed into the allocator's cache), then ``--repeat`` rounds of: the default
prefill without a workspace (what msa_bench timed), with a ``PrefillWorkspace`` made here (its buffers come from
the allocator's cache), and a fresh child process timing both; then the cache is emptied and a second workspace is
made by fresh cudaMalloc calls, timed against no workspace again. Each row: the median of ``do_bench``, one more
call timed alone by CUDA events with ``torch.cuda.memory_stats()`` deltas around it (allocations, cudaMalloc /
cudaFree, retries), and the SM clock / temperature / power read right after. Rows print as measured; table last.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

N = 131072
HEADS, KV_HEADS, HEAD_DIM = 64, 4, 128
STAT_KEYS = ("allocation.all.allocated", "allocated_bytes.all.allocated", "segment.all.allocated",
             "segment.all.freed", "num_device_alloc", "num_device_free", "num_alloc_retries", "num_sync_all_streams")
"""torch.cuda.memory_stats() counters whose change over one call is reported (allocations, segments = cudaMalloc'd
blocks, device allocs / frees, retries after a failed cudaMalloc)."""


def gpu_state() -> dict[str, float]:
    """SM clock (MHz), temperature (C), power (mW) through NVML, or nothing where it is missing."""
    try:
        return {"sm_mhz": torch.cuda.clock_rate(), "temp_c": torch.cuda.temperature(), "power_mw": torch.cuda.power_draw()}
    except Exception:  # noqa: BLE001 - NVML is optional: the row just has no clock
        return {}


def one_call(fn) -> dict[str, Any]:  # noqa: ANN001 - a callable launching GPU work
    """One call timed by CUDA events, with the allocator's counters before and after."""
    torch.cuda.synchronize()
    before = torch.cuda.memory_stats()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    t0 = time.perf_counter()
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    host_ms = (time.perf_counter() - t0) * 1e3
    after = torch.cuda.memory_stats()
    deltas = {k: after.get(k, 0) - before.get(k, 0) for k in STAT_KEYS}
    segments = [(round(s["total_size"] / 2 ** 30, 2), round(s["allocated_size"] / 2 ** 30, 2))
                for s in torch.cuda.memory_snapshot() if s["total_size"] >= 2 ** 30]
    return {"single_ms": start.elapsed_time(end), "single_host_ms": host_ms, "stats": deltas,
            "segments_gib": sorted(segments, reverse=True),
            "reserved_gib": torch.cuda.memory_reserved() / 2 ** 30,
            "allocated_gib": torch.cuda.memory_allocated() / 2 ** 30}


def measure(where: str, label: str, fn, out: Path | None) -> dict[str, Any]:  # noqa: ANN001 - GPU work
    import triton.testing

    ms = float(triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median"))
    row = {"where": where, "row": label, "ms": ms, **one_call(fn), **gpu_state()}
    line = json.dumps(row)
    print(line, flush=True)
    if out is not None:
        with out.open("a") as f:
            f.write(line + "\n")
    return row


def make_inputs():  # noqa: ANN201 - (case, indexer selection)
    from kernels.msa.indexer import msa_index_topk_triton
    from kernels.msa.inputs import make_case

    case = make_case([N], [N], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=N)  # msa_bench's case
    sel = msa_index_topk_triton(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc,
                                case.seq_lens, max_query_len=N)
    return case, sel


def default_prefill(case, sel: torch.Tensor, out: torch.Tensor, workspace=None):  # noqa: ANN001, ANN201
    from kernels.msa.prefill import sparse_attention_triton

    return lambda: sparse_attention_triton(case.q, case.kv_cache, sel, case.block_table, case.query_start_loc,
                                           case.seq_lens, HEAD_DIM ** -0.5, out, workspace=workspace)


def child(out: Path | None) -> None:
    """A fresh process (as tree_compare's): the default without, then with a workspace."""
    from kernels.msa.workspace import PrefillWorkspace

    case, sel = make_inputs()
    res = torch.empty_like(case.q)
    measure("fresh process", "default, no workspace", default_prefill(case, sel, res), out)
    torch.cuda.empty_cache()  # the no-workspace call's cached partials go, so the workspace is a fresh cudaMalloc
    measure("fresh process", "default, workspace", default_prefill(case, sel, res, PrefillWorkspace()), out)


def msa_bench_rows(case, sel: torch.Tensor) -> list[torch.Tensor]:  # noqa: ANN001
    """msa_bench's rows before the 128K indexer-selection default row, each timed once as there; outputs kept."""
    import triton.testing

    from kernels.bench.msa_bench import ceilings, timed_attention, v6_today, v9_default

    ceilings()
    kept = []
    for make in (lambda: v6_today(case, sel), lambda: timed_attention(case, sel, max_union=0),
                 lambda: v9_default(case, sel)):
        fn, res = make()
        triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median")
        kept.append(res)
    return kept


def parent(repeat: int, out: Path | None) -> None:
    from kernels.msa.workspace import PrefillWorkspace

    case, sel = make_inputs()
    kept = msa_bench_rows(case, sel)  # noqa: F841 - alive as in msa_bench, where every row keeps its output
    res = torch.empty_like(case.q)
    ws = PrefillWorkspace()
    for r in range(repeat):
        measure("msa_bench process", f"default, no workspace (round {r + 1})", default_prefill(case, sel, res), out)
        measure("msa_bench process", f"default, workspace from the cache (round {r + 1})",
                default_prefill(case, sel, res, ws), out)
        torch.cuda.empty_cache()  # room for the child (run 1 lost rounds 2-3 to OOM at 102 GiB held here)
        cmd = [sys.executable, "-m", "kernels.bench.workspace_bench", "--child"] + (["--out", str(out)] if out else [])
        rc = subprocess.run(cmd, check=False).returncode
        if rc:
            print(f"fresh child process exited with {rc}", flush=True)
    del ws
    torch.cuda.empty_cache()
    ws = PrefillWorkspace()
    for r in range(max(2, repeat - 1)):
        measure("msa_bench process", f"after empty_cache: workspace by fresh cudaMalloc (round {r + 1})",
                default_prefill(case, sel, res, ws), out)
        measure("msa_bench process", f"after empty_cache: no workspace (round {r + 1})",
                default_prefill(case, sel, res), out)


def print_table(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    print("| where | row | median ms | one call ms | allocs | cudaMalloc / cudaFree | segments +/- | retries | "
          "SM MHz | temp C |")
    print("| --- " * 10 + "|")
    for r in rows:
        s = r["stats"]
        print(f"| {r['where']} | {r['row']} | {r['ms']:.2f} | {r['single_ms']:.2f} | {s['allocation.all.allocated']} | "
              f"{s['num_device_alloc']} / {s['num_device_free']} | {s['segment.all.allocated']} / "
              f"{s['segment.all.freed']} | {s['num_alloc_retries']} | {r.get('sm_mhz', '-')} | {r.get('temp_c', '-')} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds (msa_bench process / fresh child)")
    ap.add_argument("--out", type=Path, help="JSON lines, appended as measured")
    ap.add_argument("--child", action="store_true", help="(internal) one fresh-process round")
    ap.add_argument("--table", type=Path, help="print the table of a JSON-lines file and exit")
    args = ap.parse_args()
    if args.table:
        print_table(args.table)
    elif args.child:
        child(args.out)
    else:
        parent(args.repeat, args.out)
        if args.out:
            print_table(args.out)


if __name__ == "__main__":
    main()
