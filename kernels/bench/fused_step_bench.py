"""The CUDA tile-outer step alone as the default prefill runs it: with the fused merge, on the KV-outer parts of the
same call (``tile_outer_cuda_bench --compare`` times the step without the fold).

Run under two checkouts alternately, one fresh process each (as ``tree_compare``), and compare the lines:

    for r in 1 2 3; do for t in old new; do (cd $t && PYTHONPATH=$PWD python -m kernels.bench.fused_step_bench \\
        --tree $t --jsonl $OUT/step.jsonl); done; done
    python -m kernels.bench.tree_compare --table $OUT/step.jsonl
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from kernels.bench.tree_compare import HEAD_DIM, HEADS, KV_HEADS, bench_ms, selection


def fused_step(n: int, f: float):  # noqa: ANN201 - a callable launching the step
    """The step of ``sparse_attention_triton``'s default path at ``n`` tokens and locality ``f`` (tree_compare's
    seeds), its split, CSR and KV-outer parts made once beforehand."""
    from kernels.msa.cuda import tile_outer_attention_cuda
    from kernels.msa.inputs import make_case
    from kernels.msa.merge import device_positions, device_requests
    from kernels.msa.prefill import _kv_partials, csr_from_split
    from kernels.msa.tile_outer import tile_unions

    case = make_case([n], [n], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=n)
    sel = selection(case, f"f={f}", n)
    nb, scale = case.block_table.shape[1], HEAD_DIM ** -0.5
    pos = device_positions(case.query_start_loc, case.seq_lens, n)
    req = device_requests(case.query_start_loc, n)
    split = tile_unions(sel, req, pos, case.block_table, csr_blocks=nb)
    csr = csr_from_split(split, req, nb, 128)
    po, plse, _ = _kv_partials("auto", case.q, case.kv_cache, case.block_table, case.seq_lens, csr, pos, sel.shape[2],
                               scale, 128, 4, 2, True, 64, 1.0, 1.0, None)
    out = torch.empty_like(case.q)
    return lambda: tile_outer_attention_cuda(case.q, case.kv_cache, case.seq_lens, pos, req, split, scale, out, po,
                                             plse, fuse_merge=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", required=True, help="this checkout's label")
    parser.add_argument("--jsonl", type=Path, required=True, help="append this round's rows here")
    parser.add_argument("--n", type=int, default=131072)
    parser.add_argument("--fractions", default="0.9,1.0")
    args = parser.parse_args()
    with args.jsonl.open("a") as sink:
        for f in (float(x) for x in args.fractions.split(",") if x):
            ms = bench_ms(fused_step(args.n, f))
            row = {"tree": args.tree, "row": f"N={args.n // 1024}K f={f}, tile-outer step (fused merge)", "ms": ms}
            sink.write(json.dumps(row) + "\n")
            print(row, flush=True)


if __name__ == "__main__":
    main()
