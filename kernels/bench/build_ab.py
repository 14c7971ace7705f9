"""Two builds of the sm_90a library in one process (this tree's and an older one), alternated: the whole default
prefill at 128K on a bf16 cache (16 query heads per KV head unless ``--group 8``), and the KV-outer-only prefill
(``max_union=0``: every entry through the KV-outer stage, the stage's own A/B), per selection kind; each build's
output compared with the other's (0: the change kept the arithmetic) and this build's with the fp32 reference
(last 16 tokens). The fair before / after for a change inside the CUDA kernels: same process, same inputs, same
clocks, rounds alternated (each round reverses the order), best of the rounds. Prints the table and writes JSON
lines as it goes:

    python -m kernels.bench.build_ab --old-lib .msa_cache/tile_outer_sm90-OLD.so --rounds 4 --jsonl OUT/ab.jsonl
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

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

PATHS: tuple[tuple[str, dict], ...] = (("default prefill", {}), ("KV-outer only (max_union=0)", {"max_union": 0}))
FP8_STEP_PATH: tuple[str, dict] = ("FP8 step on the fp8 cache", {"fp8_cache": True, "fp8_step": True})
"""With ``--fp8-step``: the opt-in FP8 step's default variant too (a change to the FP8 build of the kernel)."""


def build_vs_build_rows(n: int, kind: str, old_lib: Path, rows: list[Row], rounds: int = 2, group: int = 16,
                        paths: tuple[tuple[str, dict], ...] = PATHS) -> None:
    """Each of ``paths`` (knobs of sparse_attention_triton; ``fp8_cache=True``: on the case's cache quantised to
    e4m3, its error then against the dequantised cache) on this build and on ``old_lib``, alternated."""
    from kernels.msa import cuda
    from kernels.msa.inputs import dequantize_kv_fp8, make_case, quantize_kv_fp8

    bf16 = make_case([n], [n], KV_HEADS * group, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=n)
    sel = selection(bf16, kind, n)
    new, old = cuda.load(), cuda.open_library(old_lib)
    builds = {"this build": new, f"old build {old_lib.name}": old}
    shape = f"N={n // 1024}K {kind}, {group} q heads / KV head"
    try:
        for label, path_knobs in paths:
            knobs, case, exact = dict(path_knobs), bf16, bf16
            if knobs.pop("fp8_cache", False):
                kv8, k_scale, v_scale = quantize_kv_fp8(bf16.kv_cache)
                case = dataclasses.replace(bf16, kv_cache=kv8)
                exact = dataclasses.replace(bf16, kv_cache=dequantize_kv_fp8(kv8, k_scale, v_scale))
                knobs.update(k_scale=k_scale, v_scale=v_scale)
            got: dict[str, list[float]] = {b: [] for b in builds}
            outs: dict[str, torch.Tensor] = {}
            for r in range(rounds):
                for b in (list(builds) if r % 2 == 0 else list(builds)[::-1]):
                    cuda._LIB[0] = builds[b]
                    fn, out = timed_attention(case, sel, **knobs, workspace=bench_workspace())
                    got[b].append(bench_ms(fn))
                    outs[b] = out
            diff = (outs["this build"].float() - outs[f"old build {old_lib.name}"].float()).abs().max().item()
            err = reference_tail(exact, sel, outs["this build"])
            t_new, t_old = (min(v) for v in got.values())
            for b, ts in got.items():
                rows.append(Row("build vs build", shape, f"{label}, {b}", min(ts),
                                note=f"runs {', '.join(f'{t:.2f}' for t in ts)} ms; old / this {t_old / t_new:.3f}; "
                                     f"max |this - old| {diff:.1e}; err vs ref {err:.1e}"))
            del outs
    finally:
        cuda._LIB[0] = new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-lib", type=Path, required=True, help="a library built from older sources")
    parser.add_argument("--n", type=int, default=131072)
    parser.add_argument("--kinds", default="indexer sel,f=0.9")
    parser.add_argument("--group", type=int, default=16, choices=[16, 8], help="query heads per KV head")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--fp8-step", action="store_true", help="also the FP8 step on an fp8 copy of the cache")
    parser.add_argument("--jsonl", type=Path)
    args = parser.parse_args()
    rows = PrintedRows.writing_to(args.jsonl)
    paths = PATHS + ((FP8_STEP_PATH,) if args.fp8_step else ())
    for kind in [k for k in args.kinds.split(",") if k]:
        build_vs_build_rows(args.n, kind, args.old_lib, rows, args.rounds, args.group, paths)
        torch.cuda.empty_cache()
    print_table(rows, f"Library build vs build, {torch.cuda.get_device_name()}")


if __name__ == "__main__":
    main()
