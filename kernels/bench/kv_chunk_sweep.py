"""The KV-outer work item's size (``sparse_attention_triton(chunk=)``: entries of one block per item) on the default
prefill, interleaved rounds, outputs compared with the first chunk (partials are per entry, so any chunk gives the
same bytes); a markdown table last. v14: no size beat the default 128 beyond the noise (NOTES.md v14).

    python -m kernels.bench.kv_chunk_sweep --chunks 128,256,512,1024 --rounds 4
"""
from __future__ import annotations

import argparse
import functools
from collections.abc import Callable

import torch
import triton.testing

from kernels.msa.indexer import msa_index_topk_triton
from kernels.msa.inputs import MSACase, local_selection, make_case
from kernels.msa.prefill import sparse_attention_triton
from kernels.msa.workspace import PrefillWorkspace

HEADS, KV_HEADS, HEAD_DIM = 64, 4, 128


def bench_ms(fn: Callable[[], object]) -> float:
    return float(triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median"))


def sweep(label: str, case: MSACase, sel: torch.Tensor, chunks: list[int], rounds: int) -> list[str]:
    """Table rows of one selection: each chunk's median, best and samples, and whether its output equals the first's."""
    ws = PrefillWorkspace()
    args = (case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens, HEAD_DIM ** -0.5)
    outs = {}
    for c in chunks:
        outs[c] = torch.full_like(case.q, float("nan"))
        sparse_attention_triton(*args, outs[c], chunk=c, workspace=ws)
    same = {c: bool(torch.equal(outs[c], outs[chunks[0]])) for c in chunks}
    out = outs.pop(chunks[0])
    outs.clear()
    times: dict[int, list[float]] = {c: [] for c in chunks}
    for _ in range(rounds):
        for c in chunks:
            times[c].append(bench_ms(functools.partial(sparse_attention_triton, *args, out, chunk=c, workspace=ws)))
    med = {c: sorted(t)[len(t) // 2] for c, t in times.items()}
    return [f"| {label} | {c} | {same[c]} | {med[c]:.2f} | {min(times[c]):.2f} | "
            f"{' / '.join(f'{x:.2f}' for x in times[c])} | {med[chunks[0]] / med[c]:.3f}x |" for c in chunks]


def indexer_selection(case: MSACase, q_len: int) -> torch.Tensor:
    return msa_index_topk_triton(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc,
                                 case.seq_lens, max_query_len=q_len)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", default="128,256,512,1024", help="first = baseline")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--n", type=int, default=131072, help="prefill length for the 128K rows")
    a = parser.parse_args()
    chunks = [int(c) for c in a.chunks.split(",")]
    rows = []
    case = make_case([a.n], [a.n], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=a.n)
    rows += sweep(f"{a.n // 1024}K indexer sel", case, indexer_selection(case, a.n), chunks, a.rounds)
    sel = local_selection(case.query_start_loc, case.seq_lens, KV_HEADS, 0.9, seed=a.n + 9)
    rows += sweep(f"{a.n // 1024}K f=0.9", case, sel, chunks, a.rounds)
    del case, sel
    torch.cuda.empty_cache()
    ctx, q_len = 1 << 20, 32768  # a 32K chunk after 1M of context
    case = make_case([ctx], [q_len], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=5)
    rows += sweep("32K chunk @ 1M", case, indexer_selection(case, q_len), chunks, a.rounds)
    print("| row | chunk | = first chunk | median ms | best | samples | vs first (median) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
