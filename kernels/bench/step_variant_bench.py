"""Tile-outer step variants in the whole default prefill, against a base variant in the same process: per group (16
query heads per KV head: M3 at TP <= 4, 64 / 4 heads; 8: TP 8, 32 / 4 heads), cache (bf16, or fp8 with the FP8
step) and selection (128K, the issue's kinds), every variant timed in alternated rounds (base, v, base, v, ...), best
of the rounds, ratio base / variant; each output compared with the base's (max abs difference: 0 where a variant
changes only where data comes from) and with the fp32 reference (last 16 tokens; fp8 on the dequantised cache;
not for the diagnostics, whose output is wrong by design). A variant written ``V/int8`` runs with int8 KV-outer
partials (v18t; else bf16). Prints the table and writes JSON lines as it goes:

    python -m kernels.bench.step_variant_bench --jsonl OUT/steps.jsonl --rounds 3 --sets "16:fp8:12,19;8:fp8:16,19"
    python -m kernels.bench.step_variant_bench --rounds 3 --sets "16:fp8:19,19/int8,12/int8"
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


@dataclasses.dataclass(frozen=True)
class Candidate:
    variant: int
    int8: bool = False  # int8 KV-outer partials (else bf16)

    @classmethod
    def parse(cls, text: str) -> Candidate:
        """``V`` or ``V/int8``."""
        variant, _, partials = text.partition("/")
        if partials not in ("", "bf16", "int8"):
            raise ValueError(f"a variant is V or V/int8, got {text!r}")
        return cls(int(variant), partials == "int8")

    def __str__(self) -> str:
        return f"variant {self.variant}{', int8 parts' if self.int8 else ''}"


@dataclasses.dataclass(frozen=True)
class VariantSet:
    group: int
    fp8: bool
    variants: tuple[Candidate, ...]  # the first is the base

    @classmethod
    def parse(cls, text: str) -> VariantSet:
        """``GROUP:bf16|fp8:BASE,V1,V2/int8``."""
        fields = text.split(":")
        if len(fields) != 3:
            raise ValueError(f"a set is GROUP:bf16|fp8:BASE,V1,..., got {text!r}")
        group, cache, variants = fields
        if cache not in ("bf16", "fp8"):
            raise ValueError(f"cache must be bf16 or fp8, got {cache!r}")
        return cls(int(group), cache == "fp8", tuple(Candidate.parse(v) for v in variants.split(",")))


def set_rows(vs: VariantSet, n: int, kind: str, rounds: int, rows: list[Row]) -> None:
    from kernels.msa import cuda
    from kernels.msa.inputs import dequantize_kv_fp8, make_case, quantize_kv_fp8

    case = make_case([n], [n], KV_HEADS * vs.group, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=n)
    sel = selection(case, kind, n)
    knobs: dict = {"workspace": bench_workspace()}
    exact = case
    if vs.fp8:
        kv8, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
        exact = dataclasses.replace(case, kv_cache=dequantize_kv_fp8(kv8, k_scale, v_scale))
        case = dataclasses.replace(case, kv_cache=kv8)
        knobs |= {"k_scale": k_scale, "v_scale": v_scale, "fp8_step": True}
    times: dict[Candidate, list[float]] = {v: [] for v in vs.variants}
    outs: dict[Candidate, torch.Tensor] = {}
    for _ in range(rounds):
        for v in vs.variants[1:] or vs.variants:  # a set of the base alone times it alone
            for w in dict.fromkeys((vs.variants[0], v)):
                with cuda.variant_as_default(vs.group, vs.fp8, w.variant):
                    parts = torch.int8 if w.int8 else torch.bfloat16  # explicit: the default depends on the group
                    fn, out = timed_attention(case, sel, **knobs, partial_dtype=parts)
                    times[w].append(bench_ms(fn))
                outs.setdefault(w, out)
    shape = f"N={n // 1024}K {kind}, {vs.group} q heads / KV head, {'fp8 (FP8 step)' if vs.fp8 else 'bf16'}"
    base = vs.variants[0]
    t_base = min(times[base])
    for v in vs.variants:
        t = min(times[v])
        diff = (outs[v].float() - outs[base].float()).abs().max().item()
        note = (f"runs {', '.join(f'{x:.2f}' for x in times[v])} ms; base / this {t_base / t:.3f}; "
                f"max |out - base's| {diff:.1e}")
        if v.variant not in cuda.FP8_DIAG_VARIANTS:  # a diagnostic's output is wrong by design
            note += f"; err vs {'dequantised ' if vs.fp8 else ''}ref {reference_tail(exact, sel, outs[v]):.1e}"
        rows.append(Row("step variants", shape, f"{v}{' (base)' if v == base else ''}", t, note=note))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=131072)
    parser.add_argument("--kinds", default="f=0.9,f=1.0,indexer sel")
    parser.add_argument("--sets", default="16:fp8:12,19",
                        help="';'-separated GROUP:bf16|fp8:BASE,VARIANTS (the first variant is the base)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--jsonl", type=Path)
    args = parser.parse_args()
    rows = PrintedRows.writing_to(args.jsonl)
    for text in args.sets.split(";"):
        vs = VariantSet.parse(text)
        for kind in (k for k in args.kinds.split(",") if k):
            set_rows(vs, args.n, kind, args.rounds, rows)
            torch.cuda.empty_cache()
    print_table(rows, f"Tile-outer step variants, {torch.cuda.get_device_name()}")


if __name__ == "__main__":
    main()
