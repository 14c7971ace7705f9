"""SHA-256 of the default prefill's output per selection kind, to show that two checkouts compute the same bits.

A schedule-only change (which loads are issued when, not what is added in what order) must leave every output bit
as it was; run this under each tree on one GPU and compare the lines (same inputs: ``tree_compare``'s seeds):

    for t in old new; do (cd $t && PYTHONPATH=$PWD python -m kernels.bench.output_digest --n 32768); done

Where the bits may differ (e.g. a different fused multiply-add contraction), ``--save DIR`` under the old tree and
``--against DIR`` under the new one print how far apart the outputs are (max |diff| relative to max |out|, and the
share of differing elements).
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any

import torch

from kernels.bench.tree_compare import HEAD_DIM, HEADS, KV_HEADS, selection

KINDS = ("indexer sel", "f=0.5", "f=0.9", "f=1.0")


def digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().view(torch.uint8).cpu().numpy().tobytes()).hexdigest()[:16]


def difference(a: torch.Tensor, b: torch.Tensor) -> str:
    diff = (a.float() - b.float()).abs()
    return (f"max|diff|/max|out| {float(diff.max()) / max(float(b.float().abs().max()), 1e-30):.2e}, "
            f"{float((diff > 0).float().mean()):.2e} of elements differ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32768)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--save", type=Path, help="keep each output here (torch.save)")
    parser.add_argument("--against", type=Path, help="compare each output with the one saved here")
    args = parser.parse_args()
    from kernels.msa.inputs import make_case
    from kernels.msa.prefill import sparse_attention_triton

    n = args.n
    case = make_case([n], [n], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=n)
    for kind in (k for k in args.kinds.split(",") if k):
        sel = selection(case, kind, n)
        variants: tuple[tuple[str, dict[str, Any]], ...] = (
            ("bf16 parts", {"partial_dtype": torch.bfloat16}), ("int8 parts", {"partial_dtype": torch.int8}))
        for parts, knobs in variants:
            out = sparse_attention_triton(case.q, case.kv_cache, sel, case.block_table, case.query_start_loc,
                                          case.seq_lens, HEAD_DIM ** -0.5, **knobs)
            line = f"N={n} {kind} {parts}: {digest(out)} nan={int(torch.isnan(out).sum())}"
            name = f"{kind}_{parts}".replace(" ", "_").replace("=", "")
            if args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                torch.save(out.cpu(), args.save / f"{name}.pt")
            if args.against:
                line += " " + difference(out, torch.load(args.against / f"{name}.pt").to(out.device))
            print(line, flush=True)


if __name__ == "__main__":
    main()
