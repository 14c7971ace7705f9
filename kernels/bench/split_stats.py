"""What the adaptive prefill's split leaves each step, per selection kind: the tile-outer work items, union blocks per
item (clean = chosen by every token of the tile, so no mask), the KV-outer entries per token and their parts' bytes.
The step's time per kind follows from these counts (NOTES v18s: why f = 0.9 costs more than f = 1). Prints the table
and writes JSON lines:

    python -m kernels.bench.split_stats --jsonl OUT/split.jsonl [--groups 16,8] [--context 1048576 --n 32768]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from kernels.bench.msa_bench import HEAD_DIM, KV_HEADS, PrintedRows, Row, print_table
from kernels.bench.tree_compare import selection


def split_row(n: int, kind: str, group: int, rows: list[Row], device: str = "cuda", context: int = 0) -> None:
    """One row: ``n`` query tokens after ``context`` cached ones (one request)."""
    from kernels.bench.tile_outer_cuda_bench import split_for
    from kernels.msa.inputs import make_case

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    case = make_case([context + n], [n], KV_HEADS * group, KV_HEADS, HEAD_DIM, dtype, device, seed=n)
    sel = selection(case, kind, n)
    split, _, _ = split_for(case, sel)
    n_work = int(split.num_work.item())
    items = split.work[:n_work].long()
    blocks = split.union_size.flatten()[items].double()
    clean = split.clean.flatten()[items].double()
    entries = int((split.rest >= 0).sum())
    tokens = KV_HEADS * n
    part_bytes = entries * group * HEAD_DIM * 2
    after = f" after {tokens_label(context)}" if context else ""
    per_item = (f"union blocks per item {blocks.mean():.2f} (clean {clean.mean():.2f}, masked "
                f"{(blocks - clean).mean():.2f})" if n_work else "no tile shares enough blocks")
    rows.append(Row("split", f"N={tokens_label(n)}{after} {kind}, {group} q heads / KV head",
                    "tile-outer items / KV-outer entries", 0.0,
                    note=f"items {n_work} ({n_work / split.union_size.numel():.0%} of tiles); {per_item}; KV-outer "
                         f"entries per token {entries / tokens:.2f}; parts {part_bytes / 2 ** 30:.2f} GiB written, "
                         "read again by the fold or the merge"))


def tokens_label(n: int) -> str:
    return f"{n // 1024}K" if n % 1024 == 0 else str(n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=131072)
    parser.add_argument("--kinds", default="f=0.9,f=1.0,indexer sel")
    parser.add_argument("--groups", default="16,8")
    parser.add_argument("--context", type=int, default=0, help="cached tokens before the n queries")
    parser.add_argument("--jsonl", type=Path)
    args = parser.parse_args()
    rows = PrintedRows.writing_to(args.jsonl)
    for group in (int(g) for g in args.groups.split(",")):
        for kind in (k for k in args.kinds.split(",") if k):
            split_row(args.n, kind, group, rows, context=args.context)
            torch.cuda.empty_cache()
    print_table(rows, f"The split's counts, {torch.cuda.get_device_name()}")


if __name__ == "__main__":
    main()
