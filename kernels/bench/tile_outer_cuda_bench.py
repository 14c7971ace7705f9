"""The tile-outer step of MSA prefill: Triton (`_tile_outer_kernel`) vs the FA3-style sm_90a CUDA kernel
(`kernels/msa/cuda`), in one run: build, correctness (both kernels' outputs row by row, the whole adaptive prefill
against the Triton path on every token and the fp32 reference on a tail), then timings at 32K and 128K for synthetic
selections with locality f = 1.0 and 0.9 (M3 shapes: 64 query heads, 4 KV heads, d = 128, bf16). Rows print as they
are measured; a table last; everything also goes to ``--out`` (JSON lines).

    python -m kernels.bench.tile_outer_cuda_bench [--sizes 32768,131072] [--out results.jsonl]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from kernels.bench.msa_bench import HEAD_DIM, HEADS, KV_HEADS, attention_flops, bench_ms, reference_tail, rel_diff
from kernels.msa import cuda
from kernels.msa.cuda import DEFAULT_PER_SM, DEFAULT_VARIANT, VARIANTS

if TYPE_CHECKING:
    from kernels.msa.inputs import MSACase
    from kernels.msa.tile_outer import TileSplit

ROWS: list[dict] = []


def emit(out: Path | None, **row) -> None:
    """Print one row now (a run cut short keeps what it measured) and append it to the results file."""
    ROWS.append(row)
    print(" | ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    if out is not None:
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")


def split_for(case, sel):
    """(split, positions, requests) of the defaults, as sparse_attention_triton makes them (v18r: the tile's tokens
    and min_share follow the case's query heads per KV head)."""
    from kernels.msa.merge import device_positions, device_requests
    from kernels.msa.tile_outer import min_share_for, tile_tokens, tile_unions

    n = case.q.shape[0]
    pos = device_positions(case.query_start_loc, case.seq_lens, n)
    req = device_requests(case.query_start_loc, n)
    tile_t = tile_tokens(case.q.shape[1] // case.kv_cache.shape[1])
    return tile_unions(sel, req, pos, case.block_table, tile_t, min_share=min_share_for(tile_t)), pos, req


StepArgs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, "TileSplit", float,
                 torch.Tensor, torch.Tensor, torch.Tensor]


def step_args(case, sel) -> StepArgs:
    """The tile-outer step's arguments (q, cache, seq_lens, positions, requests, split, scale, out, partial_o,
    partial_lse) with NaN-poisoned output buffers."""
    split, pos, req = split_for(case, sel)
    n, heads = case.q.shape[:2]
    kv_heads = case.kv_cache.shape[1]
    out = torch.full_like(case.q, float("nan"))
    po = torch.full((kv_heads, n, sel.shape[2], heads // kv_heads, HEAD_DIM), float("nan"), dtype=case.q.dtype,
                    device="cuda")
    plse = torch.full(po.shape[:-1], float("nan"), dtype=torch.float32, device="cuda")
    return case.q, case.kv_cache, case.seq_lens, pos, req, split, HEAD_DIM ** -0.5, out, po, plse


def tile_outer_runner(case, sel, impl: str, **knobs):
    """(callable running only the tile-outer step into fixed buffers, (out, partial_o, partial_lse), split, pos)."""
    from kernels.msa.cuda import tile_outer_attention_cuda
    from kernels.msa.tile_outer import tile_outer_attention

    args = step_args(case, sel)
    split, pos, out, po, plse = args[5], args[3], args[7], args[8], args[9]
    tile_t = split.tokmask.shape[1] // max(1, split.union_size.shape[1])
    if impl == "cuda":
        fn = lambda: tile_outer_attention_cuda(*args, tile_t, **knobs)  # noqa: E731
    else:
        fn = lambda: tile_outer_attention(*args, tile_t, num_warps=4, num_stages=2, keys=64, **knobs)  # noqa: E731
    return fn, (out, po, plse), split, pos


def tile_outer_flops(split) -> float:
    """MMA FLOPs the tile-outer kernels execute: per work tile, union blocks x 128 rows x 128 keys x d x 4."""
    n_work = int(split.num_work.item())
    counts = split.union_size.flatten()[split.work[:n_work].long()]
    return float(counts.sum()) * 128 * 128 * HEAD_DIM * 4


CHECKED = [(v, 0) for v in VARIANTS] + [(3, 1), (5, 1)]
"""(variant, CTAs per SM) pairs the correctness section checks: every variant, and the persistent grid."""


def compare_kernels(case, sel, label: str, out: Path | None, variant: int, per_sm: int = 0) -> None:
    """Both tile-outer kernels on one split: direct rows of ``out`` and the carrier parts (+ LSE) must agree."""
    fn_t, (out_t, po_t, lse_t), split, _ = tile_outer_runner(case, sel, "triton")
    fn_c, (out_c, po_c, lse_c), _, _ = tile_outer_runner(case, sel, "cuda", variant=variant, per_sm=per_sm)
    fn_t()
    fn_c()
    torch.cuda.synchronize()
    direct = split.direct.T  # [T, Hkv]
    rows = direct[:, :, None].expand(-1, -1, HEADS // KV_HEADS).reshape(direct.shape[0], HEADS)
    d_err = rel_diff(out_c[rows], out_t[rows]) if bool(rows.any()) else 0.0
    written = ~torch.isnan(lse_t)  # carrier parts the Triton kernel wrote
    p_err = rel_diff(po_c[written], po_t[written]) if bool(written.any()) else 0.0
    lse_err = float((lse_c[written] - lse_t[written]).abs().max()) if bool(written.any()) else 0.0
    unwritten = int(torch.isnan(out_c[rows]).sum()) + int(torch.isnan(po_c[written]).sum())
    extra = int((~torch.isnan(lse_c) & ~written).sum())  # parts the CUDA kernel wrote that Triton did not
    emit(out, kind="kernel check", case=label, variant=variant, per_sm=per_sm, direct_rows=int(rows.sum()), direct_err=d_err, parts=int(written.sum()),
         part_err=p_err, lse_max_abs=lse_err, nan_left=unwritten, extra_parts=extra)


def check_prefill(case, sel, label: str, out: Path | None, tail: int = 16) -> None:
    """The whole adaptive prefill with each tile-outer kernel (CUDA also with the fused merge): every token vs
    Triton, the tail vs fp32."""
    from kernels.msa.prefill import sparse_attention_triton

    args = (case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens)
    out_t = sparse_attention_triton(*args, tile_impl="triton")
    ref_t = reference_tail(case, sel, out_t, tail)
    for impl, fuse in (("cuda", False), ("cuda", True), ("auto", None)):
        out_c = torch.full_like(case.q, float("nan"))
        sparse_attention_triton(*args, out=out_c, tile_impl=impl, fuse_merge=fuse)
        emit(out, kind="prefill check", case=label, impl=impl, fuse_merge=fuse, vs_triton=rel_diff(out_c, out_t),
             ref_err_cuda=reference_tail(case, sel, out_c, tail), ref_err_triton=ref_t, nan=int(torch.isnan(out_c).sum()))


def correctness(out: Path | None) -> None:
    from kernels.msa.indexer import msa_index_topk_triton
    from kernels.msa.inputs import local_selection, make_case

    small = make_case([700, 1500], [700, 1100], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=3)
    for f in (1.0, 0.9):  # two requests, chunked prefill with context, request 0's last tile short
        sel = local_selection(small.query_start_loc, small.seq_lens, KV_HEADS, f, seed=5)
        for variant, per_sm in CHECKED:
            compare_kernels(small, sel, f"small f={f}", out, variant, per_sm)
        check_prefill(small, sel, f"small f={f}", out, tail=64)
    sel = local_selection(small.query_start_loc, small.seq_lens, KV_HEADS, 1.0, seed=6)
    sel = sel[:, :, torch.randperm(sel.shape[2], device="cuda")].contiguous()  # slots in any order
    check_prefill(small, sel, "small f=1 shuffled slots", out, tail=64)
    n = 8192
    m3 = make_case([n], [n], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=41)
    idx = msa_index_topk_triton(m3.index_q, m3.index_k_cache, m3.block_table, m3.query_start_loc, m3.seq_lens,
                                max_query_len=n)
    for label, sel in (("8K indexer sel", idx),
                       ("8K f=0.9", local_selection(m3.query_start_loc, m3.seq_lens, KV_HEADS, 0.9, seed=42)),
                       ("8K f=1.0", local_selection(m3.query_start_loc, m3.seq_lens, KV_HEADS, 1.0, seed=42))):
        for variant, per_sm in CHECKED:
            compare_kernels(m3, sel, label, out, variant, per_sm)
        check_prefill(m3, sel, label, out)


def timings(sizes: list[int], out: Path | None, kinds: list[str], all_variants: bool = True, repeat: int = 1) -> None:
    """``kinds``: shared fractions f of ``local_selection`` ("1.0", "0.9", ...) or "indexer" (the indexer's
    selections on random inputs: little sharing, most entries stay KV-outer)."""
    from kernels.msa.prefill import sparse_attention_triton

    for case, pos, sel, label in selections(sizes, kinds):
        flops_sel = attention_flops(sel, pos)
        times = {}
        rows = (("triton", "triton", {"per_sm": 0}),
                *((f"cuda v{v}: {d}", "cuda", {"variant": v, "per_sm": 0}) for v, d in VARIANTS.items()),
                ("cuda v3, 1 CTA/SM persistent", "cuda", {"variant": 3, "per_sm": 1}),
                ("cuda v4, 1 CTA/SM persistent", "cuda", {"variant": 4, "per_sm": 1}),
                ("cuda v5, 1 CTA/SM persistent", "cuda", {"variant": 5, "per_sm": 1}),
                (f"cuda v{DEFAULT_VARIANT} (the default), 1 CTA/SM persistent", "cuda",
                 {"variant": DEFAULT_VARIANT, "per_sm": 1}))
        for name, impl, knobs in rows if all_variants else (rows[0], rows[-1]):
            fn, _, split, _ = tile_outer_runner(case, sel, impl, **knobs)
            t = bench_ms(fn)
            times[name] = t
            mma = tile_outer_flops(split)
            emit(out, kind="tile-outer kernel", case=label, impl=name, ms=t, mma_tflops=mma / t / 1e9,
                 vs_triton=times["triton"] / t)
            del fn
        args = (case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens)
        buf = torch.empty_like(case.q)
        for impl, fuse in (("triton", False), ("cuda", False), ("cuda", True), ("auto", None)) * repeat:
            t = bench_ms(lambda impl=impl, fuse=fuse: sparse_attention_triton(*args, out=buf, tile_impl=impl,
                                                                              fuse_merge=fuse))
            times.setdefault(f"prefill {impl}", t)
            name = {"triton": "triton", "auto": "auto (the default: v11 policy)"}.get(
                impl, f"cuda (v{DEFAULT_VARIANT}, {DEFAULT_PER_SM} CTA/SM)")
            name += " + fused merge" if fuse else ""
            emit(out, kind="whole prefill", case=label, impl=name, ms=t, sel_tflops=flops_sel / t / 1e9,
                 vs_triton=times["prefill triton"] / t)


def selections(sizes: list[int], kinds: list[str]) -> Iterator[tuple[MSACase, torch.Tensor, torch.Tensor, str]]:
    """(case, token positions, selection, label) per size and kind: one random case of n tokens per size (the
    selections as ``make_selection`` makes them), the cache emptied between them."""
    from kernels.msa.inputs import make_case
    from kernels.msa.merge import device_positions

    for n in sizes:
        case = make_case([n], [n], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=n)
        pos = device_positions(case.query_start_loc, case.seq_lens, n)
        for kind in kinds:
            yield (case, pos, *make_selection(case, kind, n))
            torch.cuda.empty_cache()
        del case, pos
        torch.cuda.empty_cache()


def make_selection(case, kind: str, n: int) -> tuple[torch.Tensor, str]:
    """(selection, label): "indexer" = the indexer's on the case's random inputs, else synthetic with locality f."""
    from kernels.msa.indexer import msa_index_topk_triton
    from kernels.msa.inputs import local_selection

    if kind == "indexer":
        sel = msa_index_topk_triton(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc,
                                    case.seq_lens, max_query_len=n)
        return sel, f"N={n // 1024}K indexer sel"
    f = float(kind)
    sel = local_selection(case.query_start_loc, case.seq_lens, KV_HEADS, f, seed=n + int(f * 10))
    return sel, f"N={n // 1024}K f={f}"


def check_variants(out: Path | None, variants: list[int], n: int = 8192) -> None:
    """v14w: each variant's step output (1 CTA/SM) against the first variant's on the same split (direct rows, carrier
    parts, LSE; poisoned buffers), and the whole default prefill with it as the default against the fp32 reference."""
    from kernels.msa.cuda import tile_outer_attention_cuda
    from kernels.msa.inputs import make_case
    from kernels.msa.prefill import sparse_attention_triton

    case = make_case([n], [n], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=41)
    for kind in ("indexer", "0.5", "0.9", "1.0"):
        sel, label = make_selection(case, kind, n)
        first = None
        for v in variants:
            args = step_args(case, sel)
            tile_outer_attention_cuda(*args, variant=v, per_sm=1)
            torch.cuda.synchronize()
            split, o, po, plse = args[5], args[7], args[8], args[9]
            first = first or (o, po, plse)
            rows = split.direct.T[:, :, None].expand(-1, -1, HEADS // KV_HEADS).reshape(o.shape[:2])
            parts = ~torch.isnan(first[2])
            emit(out, kind="variant check", case=label, variant=v, direct_vs_first=rel_diff(o[rows], first[0][rows]),
                 parts_vs_first=rel_diff(po[parts], first[1][parts]) if bool(parts.any()) else 0.0,
                 lse_max_abs=float((plse[parts] - first[2][parts]).abs().max()) if bool(parts.any()) else 0.0,
                 same_parts=bool(torch.equal(parts, ~torch.isnan(plse))), nan_left=int(torch.isnan(o[rows]).sum()))
            full = torch.full_like(case.q, float("nan"))
            with cuda.variant_as_default(16, False, v):
                sparse_attention_triton(case.q, case.kv_cache, sel, case.block_table, case.query_start_loc,
                                        case.seq_lens, out=full)
            emit(out, kind="variant prefill check", case=label, variant=v, ref_err=reference_tail(case, sel, full, 64),
                 nan=int(torch.isnan(full).sum()))


def step_fn(args: StepArgs, variant: int) -> Callable[[], None]:
    """The CUDA step alone with ``variant`` on a persistent grid (1 CTA/SM)."""
    from kernels.msa.cuda import tile_outer_attention_cuda

    return lambda: tile_outer_attention_cuda(*args, variant=variant, per_sm=1)


def compare_timings(sizes: list[int], out: Path | None, kinds: list[str], variants: list[int], repeat: int) -> None:
    """v14w: ``repeat`` interleaved rounds, per size and selection, of the step alone (each variant, 1 CTA/SM, the
    same split and buffers) and of the whole default prefill with each variant as the default (v15z: odd rounds in
    the reverse order)."""
    from kernels.msa.prefill import sparse_attention_triton

    for case, pos, sel, label in selections(sizes, kinds):
        args = step_args(case, sel)
        mma = tile_outer_flops(args[5])
        flops_sel = attention_flops(sel, pos)
        whole = (case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens)
        buf = torch.empty_like(case.q)
        for r in range(repeat):
            order = variants if r % 2 == 0 else variants[::-1]  # v15z: alternate the order (v14w saw order effects)
            for v in order:
                t = bench_ms(step_fn(args, v))
                emit(out, kind="A/B step", case=label, variant=v, round=r, ms=t, mma_tflops=mma / t / 1e9)
            for v in order:
                with cuda.variant_as_default(16, False, v):
                    t = bench_ms(lambda b=buf: sparse_attention_triton(*whole, out=b))
                emit(out, kind="A/B whole prefill", case=label, variant=v, round=r, ms=t,
                     sel_tflops=flops_sel / t / 1e9)
        del args, buf


def compare_table(variants: list[int]) -> None:
    """Medians of the A/B rows per (kind, case, variant), with the spread and the ratio to the first variant."""
    groups: dict[tuple, list[float]] = {}
    for row in ROWS:
        if row["kind"].startswith("A/B"):
            groups.setdefault((row["kind"], row["case"], row["variant"]), []).append(row["ms"])
    print(f"\n## A/B (medians of interleaved rounds; ratio = variant {variants[0]} / variant)")
    for (kind, case, v), ms in groups.items():
        base = statistics.median(groups[(kind, case, variants[0])])
        med = statistics.median(ms)
        samples = " / ".join(f"{x:.2f}" for x in ms)
        print(f"{kind} | {case} | v{v} | {med:.3f} ms | {min(ms):.3f}-{max(ms):.3f} | {base / med:.3f}x | {samples}")


def run_once(n: int, variant: int) -> None:
    """One launch of each tile-outer kernel after a warm-up, for a profiler wrapped around this process
    (``ncu --kernel-name regex:tile_outer_kernel --launch-skip 2 ...``)."""
    from kernels.msa.inputs import local_selection, make_case

    case = make_case([n], [n], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=n)
    sel = local_selection(case.query_start_loc, case.seq_lens, KV_HEADS, 1.0, seed=n + 10)
    fn_t, _, _, _ = tile_outer_runner(case, sel, "triton")
    fn_c, _, _, _ = tile_outer_runner(case, sel, "cuda", variant=variant)
    for _ in range(2):  # launches 1-2: warm-up (Triton compiles), 3-4: the profiled pair
        fn_t()
        fn_c()
    torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="32768,131072")
    parser.add_argument("--fractions", default="1.0,0.9", help="shared fractions f, or 'indexer'")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--lib-cache", type=Path, default=None, help="folder holding (or to hold) the built library")
    parser.add_argument("--cutlass-include", type=Path, default=None, help="CUTLASS headers, if not from the wheel")
    parser.add_argument("--skip-check", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="times the whole-prefill rows are timed, interleaved")
    parser.add_argument("--defaults-only", action="store_true",
                        help="tile-outer rows: Triton and the default CUDA variant only (whole-prefill rows: all)")
    parser.add_argument("--once", type=int, default=0, help="N: one launch of each kernel at N tokens (profiling)")
    parser.add_argument("--variant", type=int, default=3, help="CUDA variant for --once")
    parser.add_argument("--compare", default="", help="v14w: CUDA variants to check and time against each other "
                        "(first = baseline), e.g. 5,4; uses --sizes, --fractions, --repeat, --skip-check")
    a = parser.parse_args()
    t0 = time.time()
    lib = cuda.load(a.lib_cache, a.cutlass_include)
    emit(a.out, kind="build", library=Path(lib._name).name, seconds=time.time() - t0,
         smem_bytes=[lib.msa_tile_outer_sm90_smem_bytes(v) for v in VARIANTS], device=torch.cuda.get_device_name())
    if a.once:
        run_once(a.once, a.variant)
        return
    if a.compare:
        variants = [int(v) for v in a.compare.split(",")]
        if not a.skip_check:
            check_variants(a.out, variants)
        compare_timings([int(s) for s in a.sizes.split(",") if s], a.out, [f for f in a.fractions.split(",") if f],
                        variants, a.repeat)
        compare_table(variants)
        return
    if not a.skip_check:
        correctness(a.out)
    timings([int(s) for s in a.sizes.split(",") if s], a.out, [f for f in a.fractions.split(",") if f],
            all_variants=not a.defaults_only, repeat=a.repeat)
    print("\n## table")
    for row in ROWS:
        print(" | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()))


if __name__ == "__main__":
    main()
