"""int8 KV-outer partials against bf16 ones with the default tile-outer step (v12m), in one run on one GPU.

Run (on the GPU machine, from the repo root; the CUDA library built ahead, ``python -m kernels.msa.cuda build``):
    python -m kernels.bench.int8_partials_bench --vllm-ops .bench-vendor --json $OUT/int8_v12m.json
Rows per selection (N tokens: the indexer's on random inputs, f = 0.9, f = 1.0): the bf16 default (tile_impl auto),
int8 partials with auto (the CUDA step folds them on chip), int8 unfused (the carrier parts in the bf16 side
buffer), and both on the Triton step; timed ``--repeat`` times interleaved (the run's noise), each with its error
against the fp32 reference (last 16 tokens). Then the whole layer (indexer + attention as one call, ours bf16 / int8
and vLLM's) on the indexer's selections, and ``kernels.bench.msa_bench``'s chunked rows (time, peak memory).
``--stages``: the KV-outer kernel, the CUDA step (fused merge) and the merge alone with bf16 and int8 partials.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from kernels.bench.msa_bench import (
    HEAD_DIM,
    HEADS,
    KV_HEADS,
    PrintedRows,
    Row,
    attention_flops,
    bench_chunked,
    bench_ms,
    guarded,
    print_table,
    rel_diff,
    timed_attention,
    whole_layer_rows,
)

VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("bf16 partials, default (auto)", {}),
    ("int8 partials, auto", {"partial_dtype": torch.int8}),
    ("int8 partials, auto, unfused (bf16 carrier side buffer)", {"partial_dtype": torch.int8, "fuse_merge": False}),
    ("bf16 partials, Triton step", {"tile_impl": "triton"}),
    ("int8 partials, Triton step (bf16 carrier side buffer)", {"partial_dtype": torch.int8, "tile_impl": "triton"}),
)
"""(label, knobs of sparse_attention_triton); the first is the baseline of every ratio."""


def reference_tail(case, sel: torch.Tensor, tail: int = 16) -> torch.Tensor:
    """The fp32 reference output of the last ``tail`` tokens (on the CPU)."""
    from kernels.msa import sparse_attention

    qsl = torch.tensor([0, tail], dtype=torch.int32)
    return sparse_attention(case.q[-tail:].cpu(), case.kv_cache.cpu(), sel[:, -tail:].cpu().contiguous(),
                            case.block_table[-1:].cpu(), qsl, case.seq_lens[-1:].cpu()).double()


def bench_selection(case, sel: torch.Tensor, label: str, rows: list[Row], repeat: int) -> None:
    """Every variant on one selection: errors first, then ``repeat`` interleaved timing rounds."""
    from kernels.msa import cuda
    from kernels.msa.merge import device_positions

    n = case.q.shape[0]
    flops = attention_flops(sel, device_positions(case.query_start_loc, case.seq_lens, n))
    ref = reference_tail(case, sel)
    fns, outs = {}, {}
    for name, knobs in VARIANTS:
        fns[name], outs[name] = timed_attention(case, sel, **knobs)
    base = VARIANTS[0][0]
    po8 = torch.empty(KV_HEADS, 8, 16, HEADS // KV_HEADS, HEAD_DIM, dtype=torch.int8, device="cuda")
    step = "CUDA" if cuda.choose(case.q, case.kv_cache, po8, 8) is None else "Triton"
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            times[name].append(bench_ms(fn))
    for name, ts in times.items():
        out = outs[name][-16:].double().cpu()
        err = float((out - ref).norm() / ref.norm())
        t = min(ts)
        rows.append(Row("int8", label, name, t, flops / t / 1e9,
                        note=f"runs {' / '.join(f'{x:.2f}' for x in ts)} ms; {times[base][0] / ts[0]:.3f}x / "
                             f"{min(times[base]) / t:.3f}x the bf16 default (first run / best); ref err {err:.1e}; "
                             f"vs bf16 default {rel_diff(outs[name], outs[base]):.1e}; auto's step: {step}"))


def stage_rows(case, sel: torch.Tensor, label: str, rows: list[Row]) -> None:
    """The stages around the partials alone, bf16 against int8 partials on one split: the KV-outer kernel, the CUDA
    tile-outer step with the fused merge (it folds the parts of its rows) and the merge of the other rows."""
    from kernels.msa import cuda
    from kernels.msa.merge import device_positions, device_requests, merge_partials
    from kernels.msa.prefill import csr_from_split, kv_outer_partials
    from kernels.msa.tile_outer import tile_unions

    n, nb, scale = case.q.shape[0], case.block_table.shape[1], HEAD_DIM ** -0.5
    req = device_requests(case.query_start_loc, n)
    pos = device_positions(case.query_start_loc, case.seq_lens, n)
    split = tile_unions(sel, req, pos, case.block_table, csr_blocks=nb)
    csr = csr_from_split(split, req, nb, 128)
    entries = int((split.rest >= 0).sum())
    out = torch.empty_like(case.q)
    with_cuda = cuda.choose(case.q, case.kv_cache, torch.empty(1, 1, 1, 16, 128, dtype=torch.int8, device="cuda"),
                            8) is None
    for name, dtype in (("bf16", None), ("int8", torch.int8)):
        def kv_outer(dtype=dtype):
            return kv_outer_partials(case.q, case.kv_cache, case.block_table, case.seq_lens, csr, pos, 16, scale, 128,
                                     partial_dtype=dtype)

        po, plse, ps = kv_outer()
        part_bytes = entries * (HEADS // KV_HEADS) * (HEAD_DIM * po.element_size() + (8 if ps is not None else 4))
        t = bench_ms(kv_outer, rep_ms=100)
        rows.append(Row("stages", label, f"{name} partials: KV-outer kernel", t,
                        note=f"{entries} KV-outer entries; partial bytes written {part_bytes / 1e9:.2f} GB "
                             f"({part_bytes / t / 1e9:.2f} TB/s)"))
        if with_cuda:
            t = bench_ms(lambda: cuda.tile_outer_attention_cuda(case.q, case.kv_cache, case.seq_lens, pos, req, split,
                                                                scale, out, po, plse, fuse_merge=True,
                                                                partial_scale=ps), rep_ms=100)
            rows.append(Row("stages", label, f"{name} partials: CUDA tile-outer step, fused merge", t))
        t = bench_ms(lambda: merge_partials(po, plse, out, split.merge_sel, skip=split.owned, partial_scale=ps),
                     rep_ms=100)
        rows.append(Row("stages", label, f"{name} partials: merge of the other rows", t))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=131072, help="prefill length of the selection rows")
    parser.add_argument("--kinds", default="indexer sel,f=0.9,f=1.0")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--chunked", default="32768x1048576", help="chunk x context, as msa_bench --chunked")
    parser.add_argument("--stages", action="store_true", help="also the stages alone, bf16 vs int8 partials")
    parser.add_argument("--skip-variants", action="store_true", help="no whole-prefill or whole-layer rows")
    parser.add_argument("--vllm-ops", type=Path, default=Path(".bench-vendor"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import triton

    from kernels.bench.tree_compare import selection
    from kernels.bench.vllm_standin import load_vllm_ops
    from kernels.msa.inputs import make_case

    vllm_sparse, vllm_index = load_vllm_ops(args.vllm_ops) if args.vllm_ops.is_dir() else (None, None)
    rows = PrintedRows()
    if args.json:
        rows.jsonl = args.json.with_suffix(".jsonl")
    n = args.n
    case = make_case([n], [n], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=n)
    shape = f"N={n // 1024}K"
    for kind in args.kinds.split(","):
        sel = selection(case, kind, n)
        if args.stages:
            guarded(rows, "stages", f"{shape} {kind}", stage_rows, case, sel, f"{shape} {kind}", rows)
        if args.skip_variants:
            continue
        guarded(rows, "int8", f"{shape} {kind}", bench_selection, case, sel, f"{shape} {kind}", rows, args.repeat)
        if kind == "indexer sel":
            guarded(rows, "layer", shape, whole_layer_rows, case, n, vllm_sparse, vllm_index, rows,
                    f"{shape} indexer sel", VARIANTS[:2])
        torch.cuda.empty_cache()
    del case
    torch.cuda.empty_cache()
    for spec in (x for x in args.chunked.split(",") if x):
        chunk, ctx = (int(x) for x in spec.split("x"))
        guarded(rows, "chunked", spec, bench_chunked, chunk, ctx, 0, vllm_sparse, rows, 0.0)
    header = (f"{torch.cuda.get_device_name()} | torch {torch.__version__} | triton {triton.__version__} | "
              f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC")
    if args.json:
        args.json.write_text(json.dumps({"header": header, "rows": [asdict(r) for r in rows]}, indent=1))
    print_table(rows, header)


if __name__ == "__main__":
    main()
