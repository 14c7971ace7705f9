"""FP8 e4m3 KV cache in the prefill (v17): widened pages on the CUDA kernels vs the Triton kernels' in-kernel widening,
against the bf16 cache's default in the same run.

Rows per selection (128K, the issue's kinds): the bf16 cache (the default, CUDA steps), the fp8 cache with
``widen_fp8=False`` (before v17 the only fp8 path: Triton widens after each load), the fp8 cache with the default
(v17: the pages widened once, then the CUDA steps), the FP8 tile-outer step (v18, ``fp8_step=True``: FP8 wgmma on
transposed e4m3 pages, per ``--step-variants``), and the widening alone. Accuracy per fp8 row: against the fp32
reference on the unquantised cache (quantisation included) and on the dequantised cache (the kernels' own error),
last 16 tokens. Chunked: one 32K chunk after 1M of context (the indexer's selection), with each call's peak extra
memory (no workspace there, as msa_bench's chunked rows). Prints the table and writes JSON lines as it goes:

    python -m kernels.bench.fp8_cache_bench --jsonl OUT/fp8_cache.jsonl
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from kernels.bench.msa_bench import (
    HEAD_DIM,
    HEADS,
    KV_HEADS,
    PrintedRows,
    Row,
    bench_ms,
    bench_workspace,
    peak_extra_bytes,
    print_table,
    reference_tail,
    rel_diff,
    timed_attention,
)
from kernels.bench.tree_compare import selection


def fp8_rows(case, sel: torch.Tensor, shape: str, rows: list[Row], workspace: bool,  # noqa: ANN001
             step_variants: tuple[int, ...] = ()) -> None:
    """The bf16 default, then the fp8 cache in-kernel and widened, the FP8 step per variant, then the widening alone
    (see the module doc)."""
    from kernels.msa import cuda
    from kernels.msa.inputs import dequantize_kv_fp8, quantize_kv_fp8
    from kernels.msa.widen import widen_and_transpose, widen_fp8_pages

    ws = {"workspace": bench_workspace()} if workspace else {}
    fn16, out16 = timed_attention(case, sel, **ws)
    t16 = bench_ms(fn16)
    extra = "" if workspace else f"; peak extra memory {peak_extra_bytes(fn16) / 2 ** 30:.2f} GiB"
    rows.append(Row("fp8 cache", shape, "bf16 cache, default", t16, note=f"baseline{extra}"))
    kv8, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
    case8 = dataclasses.replace(case, kv_cache=kv8)
    exact = dataclasses.replace(case, kv_cache=dequantize_kv_fp8(kv8, k_scale, v_scale))
    times: dict[str, float] = {}
    widened_out = None
    paths: list[tuple[str, dict]] = [("fp8 cache, in-kernel widening (Triton, widen_fp8=False)", {"widen_fp8": False}),
             ("fp8 cache, widened pages (default)", {})]
    paths += [(f"fp8 cache, FP8 step (fp8_step=True, variant {v}"
               f"{', timing diagnostic, output WRONG' if v in cuda.FP8_DIAG_VARIANTS else ''})",
               {"fp8_step": True, "variant": v}) for v in step_variants]
    for i, (name, knobs) in enumerate(paths):
        with cuda.variant_as_default(16, True, knobs.pop("variant", cuda.FP8_DEFAULT_VARIANT)):
            fn, out = timed_attention(case8, sel, k_scale=k_scale, v_scale=v_scale, **knobs, **ws)
            times[name] = t = bench_ms(fn)
            mem = "" if workspace else f"; peak extra memory {peak_extra_bytes(fn) / 2 ** 30:.2f} GiB"
        vs = "" if i == 0 else f"{times[paths[0][0]] / t:.2f}x in-kernel; "
        if knobs.get("fp8_step") and widened_out is not None:
            vs += (f"{times[paths[1][0]] / t:.2f}x widened; ‖step−widened‖/‖widened‖ "
                   f"{rel_diff(out, widened_out):.1e}; ")
        rows.append(Row("fp8 cache", shape, name, t,
                 note=f"{vs}{t16 / t:.2f}x the bf16 cache; err vs unquantised ref {reference_tail(case, sel, out):.1e}, "
                      f"vs dequantised ref {reference_tail(exact, sel, out):.1e}; ‖fp8−bf16‖/‖bf16‖ "
                      f"{rel_diff(out, out16):.1e}{mem}"))
        if name == paths[1][0]:
            widened_out = out.clone()
        del out
    del exact, widened_out
    t_widen = bench_ms(lambda: widen_fp8_pages(kv8, case.block_table, case.seq_lens, v_scale,
                                               workspace=bench_workspace() if workspace else None))
    pages = case.block_table.numel()
    rows.append(Row("fp8 cache", shape, "widening alone", t_widen,
             note=f"{pages * KV_HEADS * 128 * 2 * HEAD_DIM * 3 / t_widen / 1e9:.2f} TB/s (fp8 in + bf16 out)"))
    if step_variants:
        t_both = bench_ms(lambda: widen_and_transpose(kv8, case.block_table, case.seq_lens, v_scale,
                                                      workspace=bench_workspace() if workspace else None))
        rows.append(Row("fp8 cache", shape, "widening + transposed e4m3 pages", t_both,
                        note=f"{pages * KV_HEADS * 128 * 2 * HEAD_DIM * 4 / t_both / 1e9:.2f} TB/s "
                             "(fp8 in + bf16 out + fp8 out)"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=131072)
    parser.add_argument("--kinds", default="f=0.9,indexer sel,f=1.0")
    parser.add_argument("--chunked", default="32768x1048576", help="chunk x context ('' to skip)")
    parser.add_argument("--step-variants", default="10", help="FP8 step variants to time ('' for none)")
    parser.add_argument("--jsonl", type=Path)
    args = parser.parse_args()
    from kernels.msa.indexer import msa_index_topk_triton
    from kernels.msa.inputs import make_case

    rows = PrintedRows.writing_to(args.jsonl)

    steps = tuple(int(v) for v in args.step_variants.split(",") if v)
    n = args.n
    case = make_case([n], [n], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=n)
    for kind in (k for k in args.kinds.split(",") if k):
        fp8_rows(case, selection(case, kind, n), f"N={n // 1024}K {kind}", rows, True, steps)
    del case
    torch.cuda.empty_cache()
    if args.chunked:
        chunk, ctx = (int(x) for x in args.chunked.split("x"))
        case = make_case([ctx + chunk], [chunk], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=ctx + chunk)
        sel = msa_index_topk_triton(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc,
                                    case.seq_lens, max_query_len=chunk)
        fp8_rows(case, sel, f"chunk={chunk // 1024}K ctx={ctx // 1024}K indexer sel", rows, False, steps)
    print_table(rows, f"fp8 KV cache prefill, {torch.cuda.get_device_name()}")


if __name__ == "__main__":
    main()
