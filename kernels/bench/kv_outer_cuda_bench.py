"""The KV-outer stage of MSA prefill: Triton (`_kv_outer_kernel`) vs the warp-specialised sm_90a CUDA kernel
(`kernels.msa.cuda.kv_outer_partials_cuda`, v12k), in one run: correctness (both kernels' partials entry by entry
into poisoned buffers, -1 entries never written, the whole prefill with each against the fp32 reference, a CUDA
graph replay), then timings at M3 shapes (64 query heads, 4 KV heads, d = 128, bf16): the stage alone on the CSR
the default path builds and on every entry (KV-outer only), and the whole default prefill with each kernel, on the
indexer's selections of random inputs, f = 0.9 / 1.0, and a 32K chunk after 1M of context. v12n: the metadata-warp
variants and int8 parts (``partial_dtype=torch.int8``: CUDA vs Triton, both int8, and the bf16 default, interleaved).
Rows print as measured; a table last; everything also goes to ``--out`` (JSON lines). v13q: ``--diag N`` (the stage
split by diagnostic variants), ``--whole 2,6,7`` (only the whole-prefill rows of those variants), ``--once N
--variant V`` (one launch for a profiler).

    python -m kernels.bench.kv_outer_cuda_bench [--sizes 131072] [--chunked 1] [--out results.jsonl]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from kernels.bench.msa_bench import HEAD_DIM, HEADS, KV_HEADS, bench_ms, reference_tail, rel_diff
from kernels.msa.cuda import KV_DEFAULT_INT8_VARIANT, KV_DEFAULT_VARIANT, KV_INT8_VARIANTS, KV_VARIANTS

ROWS: list[dict] = []


def emit(out: Path | None, **row) -> None:
    """Print one row now (a run cut short keeps what it measured) and append it to the results file."""
    ROWS.append(row)
    print(" | ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    if out is not None:
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")


def default_csr(case, sel, chunk: int = 128):
    """(CSR of the entries the default adaptive path leaves to KV-outer, positions) as sparse_attention_triton."""
    from kernels.msa.merge import device_positions, device_requests
    from kernels.msa.prefill import csr_from_split
    from kernels.msa.tile_outer import tile_unions

    n = case.q.shape[0]
    pos = device_positions(case.query_start_loc, case.seq_lens, n)
    req = device_requests(case.query_start_loc, n)
    nb = case.block_table.shape[1]
    split = tile_unions(sel, req, pos, case.block_table, csr_blocks=nb)
    return csr_from_split(split, req, nb, chunk), pos


def all_csr(case, sel, chunk: int = 128, window: int = 0):
    """(CSR of every entry (the KV-outer-only path), positions)."""
    from kernels.msa.merge import device_positions
    from kernels.msa.prefill import build_block_csr

    pos = device_positions(case.query_start_loc, case.seq_lens, case.q.shape[0])
    return build_block_csr(sel, case.query_start_loc, case.block_table.shape[1], chunk, window), pos


def stage_runner(case, csr, pos, top_k: int, impl: str, chunk: int = 128, per_sm: int = 1, poison: bool = False,
                 variant: int | None = None, int8: bool = False):
    """(callable running the KV-outer stage alone, a list that holds its last (partial_o, partial_lse[, scale])).
    Both kernels allocate their buffers per call (as in the prefill); ``poison``: the CUDA kernel writes into
    NaN-filled buffers instead (int8 parts: -128, a value the codec never writes; entries it must not write keep
    them). ``int8``: int8 parts + fp32 row scales (v12n)."""
    from kernels.msa.cuda import kv_outer_partials_cuda
    from kernels.msa.prefill import kv_outer_partials

    scale = HEAD_DIM ** -0.5
    args = (case.q, case.kv_cache, case.block_table, case.seq_lens, csr, pos, top_k, scale, chunk)
    got: list = []
    bufs = None
    dtype = torch.int8 if int8 else None
    if poison:
        n, heads = case.q.shape[:2]
        kv_heads = case.kv_cache.shape[1]
        shape = (kv_heads, n, top_k, heads // kv_heads)
        rows = [torch.full(shape, float("nan"), dtype=torch.float32, device="cuda") for _ in range(1 + int8)]
        parts = (torch.full((*shape, HEAD_DIM), -128, dtype=torch.int8, device="cuda") if int8
                 else torch.full((*shape, HEAD_DIM), float("nan"), dtype=case.q.dtype, device="cuda"))
        bufs = (parts, rows[0], rows[1] if int8 else None)
    keep = 3 if int8 else 2

    def run() -> None:
        if impl == "cuda":
            got[:] = kv_outer_partials_cuda(*args, per_sm=per_sm, out=bufs, variant=variant, partial_dtype=dtype)[:keep]
        else:
            got[:] = kv_outer_partials(*args, partial_dtype=dtype)[:keep]
    return run, got


def decode_int8(parts: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """int8 parts + row scales as fp32 (``merge.weighted_part`` with weight 1)."""
    return parts.float() * scale[..., None]


def compare_stage(case, sel, csr, pos, label: str, out: Path | None, chunk: int = 128, per_sm: int = 1,
                  variant: int | None = None) -> bool:
    """Both kernels on one CSR: every listed entry's part and LSE agree, unlisted entries stay poisoned (NaN)."""
    fn_t, got_t = stage_runner(case, csr, pos, sel.shape[2], "triton", chunk)
    fn_c, got_c = stage_runner(case, csr, pos, sel.shape[2], "cuda", chunk, per_sm, poison=True, variant=variant)
    fn_t()
    fn_c()
    torch.cuda.synchronize()
    po_t, lse_t = got_t
    po_c, lse_c = got_c
    listed = torch.zeros(sel.numel(), dtype=torch.bool, device="cuda")
    perm, row_ptr = csr[0], csr[1]
    listed[perm[: int(row_ptr[-1])].long()] = True
    listed = listed.view(sel.shape)
    fin = listed[..., None] & torch.isfinite(lse_t)
    p_err = rel_diff(po_c[listed], po_t[listed]) if bool(listed.any()) else 0.0
    lse_err = float((lse_c[fin] - lse_t[fin]).abs().max()) if bool(fin.any()) else 0.0
    inf_same = bool(torch.equal(torch.isinf(lse_c[listed]), torch.isinf(lse_t[listed])))
    nan_left = int(torch.isnan(po_c[listed]).sum()) + int(torch.isnan(lse_c[listed]).sum())
    written_extra = int((~torch.isnan(lse_c[~listed])).sum()) + int((~torch.isnan(po_c[~listed])).sum())
    ok = p_err < 2e-2 and lse_err < 1e-2 and inf_same and nan_left == 0 and written_extra == 0
    emit(out, kind="stage check", case=label, chunk=chunk, per_sm=per_sm, variant=variant, entries=int(listed.sum()), part_err=p_err,
         lse_max_abs=lse_err, inf_lse_same=inf_same, nan_left=nan_left, unlisted_written=written_extra, ok=ok)
    return ok


def compare_stage_int8(case, sel, csr, pos, label: str, out: Path | None, chunk: int = 128, per_sm: int = 1,
                       variant: int | None = None) -> bool:
    """int8 parts (v12n): the CUDA kernel's vs Triton's int8 parts (both decoded) and vs Triton's bf16 parts, entry
    by entry; LSEs as bf16; unlisted entries keep the poison (parts -128, LSE and scale NaN)."""
    fn_t, got_t = stage_runner(case, csr, pos, sel.shape[2], "triton", chunk, int8=True)
    fn_b, got_b = stage_runner(case, csr, pos, sel.shape[2], "triton", chunk)
    fn_c, got_c = stage_runner(case, csr, pos, sel.shape[2], "cuda", chunk, per_sm, poison=True, variant=variant,
                               int8=True)
    fn_t()
    fn_b()
    fn_c()
    torch.cuda.synchronize()
    (po_t, lse_t, sc_t), (po_b, _), (po_c, lse_c, sc_c) = got_t, got_b, got_c
    listed = torch.zeros(sel.numel(), dtype=torch.bool, device="cuda")
    listed[csr[0][: int(csr[1][-1])].long()] = True
    listed = listed.view(sel.shape)
    fin = listed[..., None] & torch.isfinite(lse_t)
    dec_c, dec_t = decode_int8(po_c[listed], sc_c[listed]), decode_int8(po_t[listed], sc_t[listed])
    any_listed = bool(listed.any())
    vs_int8 = rel_diff(dec_c, dec_t) if any_listed else 0.0
    vs_bf16 = rel_diff(dec_c, po_b[listed]) if any_listed else 0.0
    # in quanta (Triton's row scale): a value may round to the neighbouring integer, and the CUDA scale (the raw row
    # max times 1 / sum) differs from Triton's (max of the normalised row) in its last bits: |diff| <= 1 + 127 ulp-ish
    quanta = float(((dec_c - dec_t).abs() / sc_t[listed][..., None].clamp_min(1e-30)).max()) if any_listed else 0.0
    lse_err = float((lse_c[fin] - lse_t[fin]).abs().max()) if bool(fin.any()) else 0.0
    inf_same = bool(torch.equal(torch.isinf(lse_c[listed]), torch.isinf(lse_t[listed])))
    nan_left = int(torch.isnan(sc_c[listed]).sum()) + int(torch.isnan(lse_c[listed]).sum())
    written_extra = (int((po_c[~listed] != -128).sum()) + int((~torch.isnan(lse_c[~listed])).sum())
                     + int((~torch.isnan(sc_c[~listed])).sum()))
    ok = (vs_bf16 < 2e-2 and quanta <= 1.5 and lse_err < 1e-2 and inf_same and nan_left == 0
          and written_extra == 0)
    emit(out, kind="stage check int8", case=label, chunk=chunk, per_sm=per_sm, variant=variant,
         entries=int(listed.sum()), vs_triton_int8=vs_int8, max_quanta=quanta, vs_triton_bf16=vs_bf16,
         lse_max_abs=lse_err, inf_lse_same=inf_same, nan_left=nan_left, unlisted_written=written_extra, ok=ok)
    return ok


def check_prefill(case, sel, label: str, out: Path | None, tail: int = 48) -> None:
    """The whole prefill with each KV-outer kernel (default adaptive path and KV-outer only): every token vs the
    Triton kernel, the tail vs the fp32 reference."""
    from kernels.msa.prefill import sparse_attention_triton
    from kernels.msa.tile_outer import DEFAULT_MAX_UNION

    args = (case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens)
    for max_union in (DEFAULT_MAX_UNION, 0):
        for dtype in (None, torch.int8):
            want = sparse_attention_triton(*args, kv_impl="triton", max_union=max_union, partial_dtype=dtype)
            got = torch.full_like(case.q, float("nan"))
            sparse_attention_triton(*args, out=got, kv_impl="cuda", max_union=max_union, partial_dtype=dtype)
            emit(out, kind="prefill check", case=label, path="default adaptive" if max_union else "KV-outer only",
                 partials="int8" if dtype else "bf16", vs_triton=rel_diff(got, want),
                 ref_err_cuda=reference_tail(case, sel, got, tail), ref_err_triton=reference_tail(case, sel, want, tail),
                 nan=int(torch.isnan(got).sum()))


def check_graph(out: Path | None) -> None:
    """kv_impl="cuda" captured in a CUDA graph; a replay on new q equals the eager call."""
    from kernels.msa.inputs import local_selection, make_case
    from kernels.msa.prefill import sparse_attention_triton

    case = make_case([1500], [1500], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=11)
    sel = local_selection(case.query_start_loc, case.seq_lens, KV_HEADS, 0.9, seed=12)
    args = (case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens)
    res = torch.empty_like(case.q)
    sparse_attention_triton(*args, out=res, kv_impl="cuda")
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        sparse_attention_triton(*args, out=res, kv_impl="cuda")
    case.q.copy_(torch.randn_like(case.q))
    graph.replay()
    want = sparse_attention_triton(*args, kv_impl="cuda")
    emit(out, kind="graph check", case="1.5K f=0.9", replay_vs_eager=rel_diff(res, want))


def correctness(out: Path | None) -> None:
    from kernels.msa.indexer import msa_index_topk_triton
    from kernels.msa.inputs import local_selection, make_case

    # two requests, the second a chunk after 400 tokens of context; slots shuffled; ~15 % of entries -1
    small = make_case([700, 1500], [700, 1100], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=3)
    sel = local_selection(small.query_start_loc, small.seq_lens, KV_HEADS, 0.9, seed=5)
    sel = sel[:, :, torch.randperm(sel.shape[2], device="cuda")].contiguous()
    drop = torch.rand(sel.shape, device="cuda", generator=torch.Generator("cuda").manual_seed(9)) < 0.15
    sel = torch.where(drop, -1, sel).contiguous()
    for chunk, window, per_sm in ((128, 0, 1), (5, 0, 1), (128, 256, 1), (128, 0, 0)):
        csr, pos = all_csr(small, sel, chunk, window)
        for variant in KV_VARIANTS:
            compare_stage(small, sel, csr, pos, f"small f=0.9 -1s window={window}", out, chunk, per_sm, variant)
        for variant in KV_INT8_VARIANTS:
            compare_stage_int8(small, sel, csr, pos, f"small f=0.9 -1s window={window}", out, chunk, per_sm, variant)
    csr, pos = default_csr(small, sel)
    compare_stage(small, sel, csr, pos, "small f=0.9 -1s, default split CSR", out)
    compare_stage_int8(small, sel, csr, pos, "small f=0.9 -1s, default split CSR", out)
    check_prefill(small, sel, "small f=0.9 shuffled, -1s", out, tail=64)
    n = 8192
    m3 = make_case([n], [n], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=41)
    idx = msa_index_topk_triton(m3.index_q, m3.index_k_cache, m3.block_table, m3.query_start_loc, m3.seq_lens,
                                max_query_len=n)
    for label, s in (("8K indexer sel", idx),
                     ("8K f=0.9", local_selection(m3.query_start_loc, m3.seq_lens, KV_HEADS, 0.9, seed=42))):
        csr, pos = all_csr(m3, s)
        compare_stage(m3, s, csr, pos, label, out)
        compare_stage_int8(m3, s, csr, pos, label, out)
        check_prefill(m3, s, label, out)
    check_graph(out)


def time_case(case, sel, label: str, out: Path | None, repeat: int = 2) -> None:
    """v12n: the stage alone (default CSR and every entry; Triton and every CUDA variant, bf16 and int8 parts) and the
    whole default prefill (Triton, the CUDA default, the fastest bf16 variant on this row's stage if another, and
    int8 parts on Triton and CUDA), interleaved ``repeat`` times."""
    stage: dict[str, float] = {}
    for csr_name, chunk, (csr, pos) in (("default split CSR", 128, default_csr(case, sel)),
                                        ("all entries", 128, all_csr(case, sel))):
        entries = int(csr[1][-1])
        times: dict[str, float] = {}
        stage_runs: list[tuple[str, int | None, bool]] = [
            ("triton", None, False), *(("cuda", v, False) for v in KV_VARIANTS),
            ("triton", None, True), *(("cuda", v, True) for v in KV_INT8_VARIANTS)]
        for impl, variant, int8 in stage_runs:
            fn, _ = stage_runner(case, csr, pos, sel.shape[2], impl, chunk, variant=variant, int8=int8)
            name = (impl if variant is None else f"cuda v{variant}") + (" int8" if int8 else "")
            times[name] = bench_ms(fn)
            # bytes the stage must move: Q gathers (4 KiB) + parts (4 / 2 KiB) + LSE (+ scale); K/V per item ignored
            gbs = entries * (4096 + (2048 + 128 if int8 else 4096 + 64)) / times[name] / 1e6
            emit(out, kind="KV-outer stage", case=label, csr=csr_name, impl=name, entries=entries, ms=times[name],
                 tb_per_s=gbs / 1e3, vs_triton=times["triton int8" if int8 else "triton"] / times[name],
                 vs_cuda_default=times.get(f"cuda v{KV_DEFAULT_VARIANT}", float("nan")) / times[name])
            del fn
        if csr_name == "default split CSR":
            stage = times
        torch.cuda.empty_cache()
    best = min(KV_VARIANTS, key=lambda v: stage[f"cuda v{v}"])
    runs: list[tuple[str, int | None, torch.dtype | None]] = [("triton", None, None), ("cuda", KV_DEFAULT_VARIANT, None)]
    runs += [("cuda", best, None)] if best != KV_DEFAULT_VARIANT else []
    runs += [("triton", None, torch.int8), *(("cuda", v, torch.int8) for v in KV_INT8_VARIANTS)]
    interleaved_whole(case, sel, label, out, repeat, runs)


def time_whole(case, sel, label: str, out: Path | None, repeat: int, variants: list[int]) -> None:
    """v13q: the whole default prefill only, Triton and the CUDA ``variants`` (bf16, then int8 where compiled),
    interleaved ``repeat`` times (the stage rows of ``time_case`` left out: the default decision's rows)."""
    runs: list[tuple[str, int | None, torch.dtype | None]] = [
        ("triton", None, None), *(("cuda", v, None) for v in variants),
        *(("cuda", v, torch.int8) for v in variants if v in KV_INT8_VARIANTS)]
    interleaved_whole(case, sel, label, out, repeat, runs)


def interleaved_whole(case, sel, label: str, out: Path | None, repeat: int,
                      runs: list[tuple[str, int | None, torch.dtype | None]]) -> None:
    """The whole default prefill for each (kv_impl, CUDA variant or None, partial dtype or None) of ``runs``, the
    list repeated ``repeat`` times (interleaved, to tell a difference from drift); a run's variant is made the
    default for it and the defaults restored after."""
    from kernels.msa import cuda
    from kernels.msa.prefill import sparse_attention_triton

    args = (case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens)
    buf = torch.empty_like(case.q)
    times: dict[str, float] = {}
    for rep in range(repeat):
        for impl, variant, dtype in runs:
            if variant is not None:
                cuda.KV_DEFAULT_VARIANT = cuda.KV_DEFAULT_INT8_VARIANT = variant
            name = (impl if variant is None else f"cuda v{variant}") + (" int8" if dtype else "")
            t = bench_ms(lambda impl=impl, dtype=dtype: sparse_attention_triton(*args, out=buf, kv_impl=impl,
                                                                                partial_dtype=dtype))
            times.setdefault(name, t)
            emit(out, kind="whole prefill", case=label, kv_impl=name, run=rep + 1, ms=t,
                 vs_triton=times["triton"] / t,
                 vs_cuda_default=times.get(f"cuda v{KV_DEFAULT_VARIANT}", float("nan")) / t)
            cuda.KV_DEFAULT_VARIANT, cuda.KV_DEFAULT_INT8_VARIANT = KV_DEFAULT_VARIANT, KV_DEFAULT_INT8_VARIANT


def timings(sizes: list[int], chunked: bool, out: Path | None, repeat: int = 2, whole: list[int] | None = None) -> None:
    from kernels.msa.indexer import msa_index_topk_triton
    from kernels.msa.inputs import local_selection, make_case

    for n in sizes:
        case = make_case([n], [n], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=n)
        for kind in ("indexer", "0.9") if whole else ("indexer", "0.9", "1.0"):  # f = 1: no KV-outer entries
            if kind == "indexer":
                sel = msa_index_topk_triton(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc,
                                            case.seq_lens, max_query_len=n)
            else:
                sel = local_selection(case.query_start_loc, case.seq_lens, KV_HEADS, float(kind), seed=n + 9)
            label = f"N={n // 1024}K {'indexer sel' if kind == 'indexer' else 'f=' + kind}"
            if whole:
                time_whole(case, sel, label, out, repeat, whole)
            else:
                time_case(case, sel, label, out, repeat)
            del sel
        del case
        torch.cuda.empty_cache()
    if chunked:
        chunk, ctx = 32768, 1 << 20
        case = make_case([ctx + chunk], [chunk], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=7)
        sel = msa_index_topk_triton(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc,
                                    case.seq_lens, max_query_len=chunk)
        if whole:
            time_whole(case, sel, "chunk=32K ctx=1M indexer sel", out, repeat, whole)
        else:
            time_case(case, sel, "chunk=32K ctx=1M indexer sel", out, repeat)


def run_once(n: int, variant: int | None = None) -> None:
    """One launch of each KV-outer kernel (Triton, then CUDA) on every entry of the indexer's selections at N = n,
    after a warm-up, for a profiler wrapped around this process (``ncu --kernel-name regex:kv_outer --launch-skip 2
    ...``: launches 1-2 warm up, 3-4 are the profiled pair)."""
    from kernels.msa.indexer import msa_index_topk_triton
    from kernels.msa.inputs import make_case

    case = make_case([n], [n], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=n)
    sel = msa_index_topk_triton(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc,
                                case.seq_lens, max_query_len=n)
    csr, pos = all_csr(case, sel)
    fn_t, _ = stage_runner(case, csr, pos, sel.shape[2], "triton")
    fn_c, _ = stage_runner(case, csr, pos, sel.shape[2], "cuda", variant=variant)
    for _ in range(2):
        fn_t()
        fn_c()
    torch.cuda.synchronize()


def diagnostics(n: int, out: Path | None, repeat: int = 3, variants: list[int] | None = None) -> None:
    """v13q: the stage's time split by diagnostic variants (``cuda.KV_DIAG_VARIANTS``: no math, no Q gathers, no
    stores; their parts are wrong by design) next to the real variants, on the indexer's selections at N = n (default
    split CSR and every entry), interleaved ``repeat`` times; ``variants`` (v14v): only these, in this order."""
    from kernels.msa.cuda import KV_DIAG_VARIANTS
    from kernels.msa.indexer import msa_index_topk_triton
    from kernels.msa.inputs import make_case

    case = make_case([n], [n], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=n)
    sel = msa_index_topk_triton(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc,
                                case.seq_lens, max_query_len=n)
    for csr_name, (csr, pos) in (("default split CSR", default_csr(case, sel)), ("all entries", all_csr(case, sel))):
        entries = int(csr[1][-1])
        for rep in range(repeat):
            for variant in variants or (*KV_VARIANTS, *KV_DIAG_VARIANTS):
                fn, _ = stage_runner(case, csr, pos, sel.shape[2], "cuda", variant=variant)
                ms = bench_ms(fn)
                emit(out, kind="diag stage", case=f"N={n // 1024}K indexer sel", csr=csr_name, run=rep + 1,
                     variant=variant, what=KV_DIAG_VARIANTS.get(variant, KV_VARIANTS.get(variant)), entries=entries,
                     ms=ms, tb_per_s=entries * (4096 + 4096 + 64) / ms / 1e9)
                del fn
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="131072")
    parser.add_argument("--chunked", type=int, default=1, help="1: also a 32K chunk after 1M of context")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--lib-cache", type=Path, default=None, help="folder holding (or to hold) the built library")
    parser.add_argument("--skip-check", action="store_true")
    parser.add_argument("--repeat", type=int, default=2, help="interleaved runs of each whole-prefill row")
    parser.add_argument("--once", type=int, default=0, help="N: one launch of each KV-outer kernel (profiling)")
    parser.add_argument("--variant", type=int, default=None, help="--once: the CUDA variant (default: the default)")
    parser.add_argument("--whole", default="", help="variants, e.g. 2,6,7: only the whole-prefill rows (v13q)")
    parser.add_argument("--diag", type=int, default=0, help="N: the stage split by diagnostic variants (v13q)")
    parser.add_argument("--stage-variants", default="", help="--diag: only these variants, e.g. 6,7")
    a = parser.parse_args()
    if a.once:
        run_once(a.once, a.variant)
        return
    if a.diag:
        diagnostics(a.diag, a.out, a.repeat, [int(v) for v in a.stage_variants.split(",") if v] or None)
        return
    from kernels.msa import cuda

    t0 = time.time()
    lib = cuda.load(a.lib_cache)
    emit(a.out, kind="build", library=Path(lib._name).name, seconds=time.time() - t0,
         smem_bytes=[lib.msa_kv_outer_sm90_smem_bytes(v) for v in KV_VARIANTS], device=torch.cuda.get_device_name())
    if not a.skip_check:
        correctness(a.out)
    timings([int(s) for s in a.sizes.split(",") if s], bool(a.chunked), a.out, a.repeat,
            [int(v) for v in a.whole.split(",") if v] or None)
    print("\n## table")
    for row in ROWS:
        print(" | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()))


if __name__ == "__main__":
    main()
