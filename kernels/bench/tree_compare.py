"""Two checkouts in one run: the default prefill and the whole layer, timed under whichever tree is first on sys.path.

Rows of one configuration move ~5-8 % between repeats on an H200, and the previous default cannot always be rebuilt
inside the new tree (its merge, split and kernels were replaced), so the fair "before / after" is the old checkout
and the new one timed alternately on the same machine. Each call times one tree once and appends JSON lines;
``--table`` prints the table over every round (best and all samples per tree and row, new/old ratios):

    for r in 1 2 3; do for t in old new; do (cd $t && PYTHONPATH=$PWD python -m kernels.bench.tree_compare \\
        --tree $t --jsonl $OUT/trees.jsonl); done; done
    python -m kernels.bench.tree_compare --table $OUT/trees.jsonl

Only public entry points that have not changed since v12 are used (``make_case``, ``local_selection``,
``msa_index_topk_triton``, ``sparse_attention_triton``), so an older checkout runs this file from the newer one
(the fp8 indexer row needs v13r or later).
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch

HEADS, KV_HEADS, HEAD_DIM = 64, 4, 128
KINDS = ("indexer sel", "f=0.9", "f=1.0")


def bench_ms(fn) -> float:  # noqa: ANN001 - a callable launching GPU work
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median"))


def selection(case, kind: str, n: int) -> torch.Tensor:  # noqa: ANN001 - a kernels.msa.inputs.MSACase
    """The selections every tree is timed on: "indexer sel" (the indexer on the case's random inputs) or "f=<x>"
    (synthetic locality x, with the seeds msa_bench uses, so the rows are the same selections as its own)."""
    from kernels.msa.indexer import msa_index_topk_triton
    from kernels.msa.inputs import local_selection

    if kind == "indexer sel":
        return msa_index_topk_triton(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc,
                                     case.seq_lens, max_query_len=n)
    f = float(kind.removeprefix("f="))
    return local_selection(case.query_start_loc, case.seq_lens, KV_HEADS, f, seed=n + int(f * 10))


def time_tree(tree: str, n: int, kinds: list[str]) -> list[dict]:
    """One round of every row under the checkout on sys.path."""
    from kernels.msa.indexer import msa_index_topk_triton
    from kernels.msa.inputs import make_case
    from kernels.msa.prefill import sparse_attention_triton

    case = make_case([n], [n], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=n)
    out = torch.empty_like(case.q)

    def index() -> torch.Tensor:
        return msa_index_topk_triton(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc,
                                     case.seq_lens, max_query_len=n)

    def attend(sel: torch.Tensor, **knobs) -> None:  # noqa: ANN003 - sparse_attention_triton's knobs
        sparse_attention_triton(case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens,
                                HEAD_DIM ** -0.5, out, **knobs)

    selections = {kind: selection(case, kind, n) for kind in KINDS}
    rows = []
    for kind in kinds:
        sel = selections[kind]
        for parts, knobs in (("bf16 parts", {"partial_dtype": torch.bfloat16}), ("int8 parts", {"partial_dtype": torch.int8})):
            rows.append({"tree": tree, "row": f"N={n // 1024}K {kind}, prefill, {parts}",
                         "ms": bench_ms(lambda sel=sel, knobs=knobs: attend(sel, **knobs))})
        if kind == "indexer sel":
            rows.append({"tree": tree, "row": f"N={n // 1024}K indexer sel, whole layer (indexer + attention)",
                         "ms": bench_ms(lambda: attend(index()))})
            rows.append({"tree": tree, "row": f"N={n // 1024}K indexer alone, bf16", "ms": bench_ms(index)})
            fp8 = (case.index_q.to(torch.float8_e4m3fn), case.index_k_cache.to(torch.float8_e4m3fn))  # v13r on
            rows.append({"tree": tree, "row": f"N={n // 1024}K indexer alone, fp8 e4m3 q + cache",
                         "ms": bench_ms(lambda: msa_index_topk_triton(*fp8, case.block_table, case.query_start_loc,
                                                                      case.seq_lens, max_query_len=n))})
    return rows


def print_table(path: Path) -> None:
    samples: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    trees: list[str] = []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        samples[r["row"]][r["tree"]].append(r["ms"])
        if r["tree"] not in trees:
            trees.append(r["tree"])
    print("| row | " + " | ".join(f"{t} (best; all samples)" for t in trees)
          + (f" | {trees[-1]} vs {trees[0]} (best/best)" if len(trees) == 2 else "") + " |")
    print("| --- " * (len(trees) + 1 + (len(trees) == 2)) + "|")
    for row, per_tree in samples.items():
        cells = [f"{min(per_tree[t]):.2f} ms; {' / '.join(f'{x:.2f}' for x in per_tree[t])}" if per_tree[t] else "-"
                 for t in trees]
        ratio = ([f"{min(per_tree[trees[0]]) / min(per_tree[trees[1]]):.3f}x"]
                 if len(trees) == 2 and per_tree[trees[0]] and per_tree[trees[1]] else [])
        print("| " + " | ".join([row, *cells, *ratio]) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", help="this checkout's label (e.g. v12, v13)")
    parser.add_argument("--jsonl", type=Path, help="append this round's rows here")
    parser.add_argument("--n", type=int, default=131072)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--table", type=Path, help="print the table of a finished JSONL file and exit")
    parser.add_argument("--kv-variant", type=int, default=None,
                        help="v15y: this CUDA KV-outer variant as the default (bf16 and int8) for this round")
    args = parser.parse_args()
    if args.table:
        print_table(args.table)
        return
    if not (args.tree and args.jsonl):
        parser.error("--tree and --jsonl are needed to time a round")
    if args.kv_variant is not None:
        from kernels.msa import cuda

        cuda.KV_DEFAULT_VARIANT = cuda.KV_DEFAULT_INT8_VARIANT = args.kv_variant
    rows = time_tree(args.tree, args.n, args.kinds.split(","))
    with args.jsonl.open("a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    for r in rows:
        print(f"{r['tree']:>6}  {r['row']:<60} {r['ms']:8.2f} ms")


if __name__ == "__main__":
    main()
