"""M3 at tensor parallel 8 (v18r): the prefill at 8 query heads per KV head, where before v18r only the Triton steps
ran, against the Triton steps in the same run; and the 16-head defaults re-timed against an older library build.

Rows per selection at 128K (32 query heads on 4 KV heads: four TP-8 ranks' heads, so that the KV-head count, the
tiles per KV head and the selections are msa_bench's own): the Triton steps with 8-token tiles and min_share 3 (the
defaults before v18r), the Triton steps with v18r's 16-token tiles and min_share 6, the CUDA tile-outer step with
the Triton KV-outer stage, the default (v18r: both CUDA steps on 16-token tiles), and on an fp8 cache the Triton steps widening in-kernel (the
default before v18r), the widened pages (v18r's default) and the FP8 step (its default variant). Each row's error against the fp32 reference (last 16 tokens; fp8 rows on the dequantised cache).
``--old-lib PATH``: a library built from older sources; the 16-head rows (64 / 4 heads: bf16 default, FP8 step) then
alternate between it and this build, so a change to the shared kernel shows as a same-run ratio. Prints the table
and writes JSON lines as it goes:

    python -m kernels.bench.tp8_bench --jsonl OUT/tp8.jsonl [--old-lib .msa_cache/tile_outer_sm90-OLD.so]
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from kernels.bench.build_ab import build_vs_build_rows
from kernels.bench.msa_bench import (
    HEAD_DIM,
    KV_HEADS,
    PrintedRows,
    Row,
    bench_ms,
    bench_workspace,
    print_table,
    reference_tail,
    timed_attention,
)
from kernels.bench.tree_compare import selection

OLD_VS_NEW: tuple[tuple[str, dict], ...] = (("bf16 cache, default", {}),
                                            ("fp8 cache, FP8 step", {"fp8_cache": True, "fp8_step": True}))
"""The 16-head defaults ``--old-lib`` times on both builds."""
TP8_HEADS = 32
"""Four TP-8 ranks' query heads (8 per KV head) on msa_bench's 4 KV heads."""


def tp8_rows(n: int, kind: str, rows: list[Row]) -> None:
    from kernels.msa import cuda
    from kernels.msa.inputs import dequantize_kv_fp8, make_case, quantize_kv_fp8

    case = make_case([n], [n], TP8_HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=n)
    sel = selection(case, kind, n)
    shape = f"N={n // 1024}K {kind}, 8 q heads / KV head"
    ws = {"workspace": bench_workspace()}
    paths: list[tuple[str, dict]] = [("Triton steps, 8-token tiles, min_share 3 (before v18r)",
              {"tile_impl": "triton", "kv_impl": "triton", "union_tile": 8, "min_share": 3}),
             ("Triton steps, 16-token tiles, min_share 6", {"tile_impl": "triton", "kv_impl": "triton"}),
             ("CUDA tile-outer step, Triton KV-outer", {"kv_impl": "triton"}),
             ("default (v18r: both CUDA steps, 16-token tiles)", {})]
    probe = torch.empty((KV_HEADS, 1, 16, TP8_HEADS // KV_HEADS, HEAD_DIM), dtype=torch.bfloat16, device="cuda")
    cuda.prepare()
    step = cuda.choose(case.q, case.kv_cache, probe, 16)
    times: list[float] = []
    for name, knobs in paths:
        fn, out = timed_attention(case, sel, **knobs, **ws)
        times.append(bench_ms(fn))
        note = f"{times[0] / times[-1]:.2f}x the Triton 8-token row; err vs ref {reference_tail(case, sel, out):.1e}"
        if not knobs:
            note += "; step: CUDA" if step is None else f"; step NOT CUDA: {step}"
        rows.append(Row("tp8", shape, name, times[-1], note=note))
        del out
    kv8, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
    case8 = dataclasses.replace(case, kv_cache=kv8)
    exact = dataclasses.replace(case, kv_cache=dequantize_kv_fp8(kv8, k_scale, v_scale))
    fp8: list[float] = []
    for name, knobs in (("fp8 cache, in-kernel widening (Triton, widen_fp8=False; the default before v18r)",
                         {"widen_fp8": False}),
                        ("fp8 cache, widened pages (v18r default: both CUDA steps)", {}),
                        (f"fp8 cache, FP8 step (fp8_step=True, variant {cuda.default_variant(8, fp8=True)})",
                         {"fp8_step": True})):
        fn, out = timed_attention(case8, sel, k_scale=k_scale, v_scale=v_scale, **knobs, **ws)
        fp8.append(bench_ms(fn))
        rows.append(Row("tp8", shape, name, fp8[-1],
                        note=f"{fp8[0] / fp8[-1]:.2f}x in-kernel; {times[0] / fp8[-1]:.2f}x the Triton 8-token bf16 "
                             f"row; err vs dequantised ref {reference_tail(exact, sel, out):.1e}"))
        del out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=131072)
    parser.add_argument("--kinds", default="f=0.9,f=1.0,indexer sel")
    parser.add_argument("--old-lib", type=Path, help="an older library build to time the 16-head defaults against")
    parser.add_argument("--jsonl", type=Path)
    args = parser.parse_args()
    rows = PrintedRows.writing_to(args.jsonl)
    kinds = [k for k in args.kinds.split(",") if k]
    for kind in kinds:
        tp8_rows(args.n, kind, rows)
        torch.cuda.empty_cache()
    if args.old_lib:
        for kind in kinds:
            build_vs_build_rows(args.n, kind, args.old_lib, rows, paths=OLD_VS_NEW)
            torch.cuda.empty_cache()
    print_table(rows, f"M3 at TP 8 (8 query heads per KV head), {torch.cuda.get_device_name()}")


if __name__ == "__main__":
    main()
