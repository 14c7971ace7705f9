"""The partial merge (``kernels.msa.merge.merge_partials``) against its bandwidth floor (v13p), in one run on one GPU.

Run (on the GPU machine, from the repo root; the CUDA library built ahead, ``python -m kernels.msa.cuda build``):
    python -m kernels.bench.merge_bench --json $OUT/merge_v13p.json
At M3 shapes (64 query heads, 4 KV heads, d = 128, bf16), N tokens (default 128K) with the indexer's selections of
random inputs, on the partial buffers the default prefill builds (bf16 and int8 parts; the CUDA KV-outer stage when
the library is there; ``merge_sel`` / ``skip=owned`` as ``sparse_attention_triton`` passes them), on every entry
(the KV-outer-only path) and with int8 parts plus the bf16 carrier side buffer (the unfused step, v12m), the
library's merge (v13p: every part's LSE first, then an unrolled pass of single-part loads) against the v12 merge
(an online softmax over the parts, each load behind its own LSE; a copy kept in this file as the baseline):
1. correctness: the library's merge (and each swept launch) against the v12 merge on the same buffers, both into
   NaN-poisoned outputs (skip rows must keep the poison);
2. the merge alone, interleaved ``--repeat`` times, with the bytes it must move and GB/s against the copy rate
   measured in the same run (the floor);
3. the whole default prefill (bf16 and int8 parts) and decode B = 64 x 128K with each merge, interleaved.
Rows print as measured; a table last.
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import triton
import triton.language as tl

from kernels.bench.msa_bench import (
    HEAD_DIM,
    HEADS,
    KV_HEADS,
    PrintedRows,
    Row,
    bench_ms,
    ceilings,
    graph_ms,
    guarded,
    print_table,
    rel_diff,
    timed_attention,
)
from kernels.msa.merge import CarrierParts, merge_partials, weighted_part

GROUP = HEADS // KV_HEADS


# --- the v12 merge (v6-v12's online softmax over the parts), kept here only as this bench's same-run baseline -------
@triton.jit
def _v12_fold_part(m, denom, acc, lse, po_ptr, ps_ptr, part, offs_d, mask, HEAD_DIM: tl.constexpr):
    m_new = tl.maximum(m, lse)
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp2(m - m_safe)
    w = tl.exp2(lse - m_safe)
    return m_new, denom * alpha + w, acc * alpha[:, None] + weighted_part(po_ptr, ps_ptr, part, w, offs_d, mask,
                                                                          HEAD_DIM, "")


@triton.jit
def _v12_merge_kernel(
    po_ptr, plse_ptr, ps_ptr, sel_ptr, skip_ptr, out_ptr, cslot_ptr, co_ptr, clse_ptr,
    num_tokens,
    stride_sh, stride_st,
    stride_ot, stride_oh,
    GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, HEAD_DIM: tl.constexpr, NUM_PARTS: tl.constexpr,
    TILE_T: tl.constexpr, HAS_SEL: tl.constexpr, HAS_SKIP: tl.constexpr, HAS_CARRIER: tl.constexpr,
):
    h = tl.program_id(1)
    offs_r = tl.arange(0, TILE_T * GROUP_PAD)
    t = tl.program_id(0) * TILE_T + offs_r // GROUP_PAD
    g = offs_r % GROUP_PAD
    row_ok = (t < num_tokens) & (g < GROUP)
    if HAS_SKIP:
        row_ok = row_ok & (tl.load(skip_ptr + h * num_tokens + t, mask=row_ok, other=1) == 0)
        if tl.max(row_ok.to(tl.int32), axis=0) == 0:
            return
    offs_d = tl.arange(0, HEAD_DIM)
    base = (h.to(tl.int64) * num_tokens + t) * NUM_PARTS
    m = tl.full((TILE_T * GROUP_PAD,), float("-inf"), tl.float32)
    denom = tl.zeros((TILE_T * GROUP_PAD,), tl.float32)
    acc = tl.zeros((TILE_T * GROUP_PAD, HEAD_DIM), tl.float32)
    if HAS_CARRIER:
        side = (h.to(tl.int64) * num_tokens + t) * GROUP + g
        has = row_ok & (tl.load(cslot_ptr + h * num_tokens + t, mask=row_ok, other=-1) >= 0)
        lse = tl.load(clse_ptr + side, mask=has, other=float("-inf"))
        m, denom, acc = _v12_fold_part(m, denom, acc, lse, co_ptr, ps_ptr, side, offs_d, has, HEAD_DIM)
    for k in range(NUM_PARTS):
        lse = tl.load(plse_ptr + (base + k) * GROUP + g, mask=row_ok, other=float("-inf"))
        if HAS_SEL:
            blk = tl.load(sel_ptr + h * stride_sh + t.to(tl.int64) * stride_st + k, mask=row_ok, other=-1)
            lse = tl.where(blk >= 0, lse, float("-inf"))
        m, denom, acc = _v12_fold_part(m, denom, acc, lse, po_ptr, ps_ptr, (base + k) * GROUP + g, offs_d, row_ok,
                                       HEAD_DIM)
    acc = acc / tl.where(denom > 0, denom, 1.0)[:, None]
    out = out_ptr + t.to(tl.int64)[:, None] * stride_ot + (h * GROUP + g)[:, None] * stride_oh + offs_d[None, :]
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=row_ok[:, None])


def v12_merge(partial_o: torch.Tensor, partial_lse: torch.Tensor, out: torch.Tensor, selection: torch.Tensor | None,
              rows: int | None = None, skip: torch.Tensor | None = None, partial_scale: torch.Tensor | None = None,
              carrier: CarrierParts | None = None) -> None:
    """The v12 library merge with ``merge_partials``' signature (its launch: 16 rows, 4 warps)."""
    num_kv_heads, num_tokens, num_parts, group, head_dim = partial_o.shape
    if num_tokens == 0:
        return
    sel = selection if selection is not None else partial_lse
    group_pad = triton.next_power_of_2(group)
    tile_t = max(1, (rows or (16 if partial_o.is_cuda else 512)) // group_pad)
    scales = partial_scale if partial_scale is not None else partial_lse
    side = carrier if carrier is not None else (partial_lse, partial_o, partial_lse)
    _v12_merge_kernel[(triton.cdiv(num_tokens, tile_t), num_kv_heads)](
        partial_o, partial_lse, scales, sel, skip.view(torch.uint8) if skip is not None else sel, out, *side,
        num_tokens, sel.stride(0), sel.stride(1), out.stride(0), out.stride(1),
        GROUP=group, GROUP_PAD=group_pad, HEAD_DIM=head_dim, NUM_PARTS=num_parts,
        TILE_T=tile_t, HAS_SEL=selection is not None, HAS_SKIP=skip is not None, HAS_CARRIER=carrier is not None,
        num_warps=4,
    )


def library_rows(rows: int) -> Callable:
    """The library merge with another ``rows`` per program (the sweep)."""
    def run(partial_o, partial_lse, out, selection, _rows=None, skip=None, partial_scale=None, carrier=None):
        merge_partials(partial_o, partial_lse, out, selection, rows, skip, partial_scale, carrier)
    return run


BASELINE = "v12 merge (legacy copy in this bench)"
LIBRARY = "v13p merge (library)"
SWEEP: tuple[tuple[str, int], ...] = (("v13p merge, 32 rows per program", 32), ("v13p merge, 64 rows per program", 64))
"""(label, rows per program) swept on the default path's buffers besides the library's 16."""


# --- partial buffers as the prefill builds them ---------------------------------------------------------------------
def default_buffers(case, sel: torch.Tensor, dtype: torch.dtype | None, unfused: bool = False) -> dict[str, Any]:
    """The default path's KV-outer partials and the merge's arguments (``sparse_attention_triton``'s order); with
    ``unfused`` the tile-outer step runs first into the bf16 carrier side buffer (int8 parts, v12m)."""
    from kernels.msa import prefill
    from kernels.msa.merge import CarrierParts, device_positions, device_requests
    from kernels.msa.tile_outer import (
        DEFAULT_MAX_UNION,
        DEFAULT_MIN_SHARE,
        DEFAULT_MIN_SHARED_PCT,
        DEFAULT_TILE_T,
        tile_unions,
    )

    n, nb, scale = case.q.shape[0], case.block_table.shape[1], HEAD_DIM ** -0.5
    pos = device_positions(case.query_start_loc, case.seq_lens, n)
    req = device_requests(case.query_start_loc, n)
    split = tile_unions(sel, req, pos, case.block_table, DEFAULT_TILE_T, DEFAULT_MAX_UNION, DEFAULT_MIN_SHARE,
                        DEFAULT_MIN_SHARED_PCT, csr_blocks=nb)
    csr = prefill.csr_from_split(split, req, nb, 128)
    po, plse, ps = prefill._kv_partials("auto", case.q, case.kv_cache, case.block_table, case.seq_lens, csr, pos,
                                        sel.shape[2], scale, 128, 4, 2, True, 64, 1.0, 1.0, dtype)
    if not unfused:
        return {"po": po, "plse": plse, "ps": ps, "sel": split.merge_sel, "skip": split.owned, "carrier": None}
    from kernels.msa.cuda import tile_outer_attention_cuda

    carrier = CarrierParts.empty(split.carrier, GROUP, HEAD_DIM, case.q.dtype)
    tile_outer_attention_cuda(case.q, case.kv_cache, case.seq_lens, pos, req, split, scale, torch.empty_like(case.q),
                              po, plse, DEFAULT_TILE_T, fuse_merge=False, partial_scale=ps,
                              carrier_parts=carrier)
    return {"po": po, "plse": plse, "ps": ps, "sel": split.rest, "skip": split.direct, "carrier": carrier}


def kv_only_buffers(case, sel: torch.Tensor, dtype: torch.dtype | None) -> dict[str, Any]:
    """Every entry KV-outer (``max_union=0``): the merge reads all 16 parts of every row."""
    from kernels.msa import prefill
    from kernels.msa.merge import device_positions

    pos = device_positions(case.query_start_loc, case.seq_lens, case.q.shape[0])
    csr = prefill.build_block_csr(sel, case.query_start_loc, case.block_table.shape[1], 128, 0)
    po, plse, ps = prefill._kv_partials("auto", case.q, case.kv_cache, case.block_table, case.seq_lens, csr, pos,
                                        sel.shape[2], HEAD_DIM ** -0.5, 128, 4, 2, True, 64, 1.0, 1.0, dtype)
    return {"po": po, "plse": plse, "ps": ps, "sel": sel, "skip": None, "carrier": None}


def merge_bytes(buf: dict[str, Any]) -> int:
    """Fewest bytes the merge moves: per merged row (token, KV head) its present parts (values, and the int8 scale),
    all its parts' LSEs and selection entries, the carrier part where one exists, and its output."""
    po, sel, skip, carrier = buf["po"], buf["sel"], buf["skip"], buf["carrier"]
    merged = ~skip if skip is not None else torch.ones(sel.shape[:2], dtype=torch.bool, device=sel.device)
    rows = int(merged.sum())
    present = int(((sel >= 0) & merged[..., None]).sum())
    part = GROUP * (HEAD_DIM * po.element_size() + (4 if buf["ps"] is not None else 0))
    total = present * part + rows * sel.shape[2] * (GROUP * 4 + 4) + rows * GROUP * HEAD_DIM * 2
    if carrier is not None:
        total += int(((carrier.slot >= 0) & merged).sum()) * GROUP * (HEAD_DIM * 2 + 4) + rows * 4
    return total


def run_merge(fn: Callable, buf: dict[str, Any], out: torch.Tensor) -> None:
    fn(buf["po"], buf["plse"], out, buf["sel"], skip=buf["skip"], partial_scale=buf["ps"], carrier=buf["carrier"])


def check_merge(buf: dict[str, Any], label: str, q: torch.Tensor, rows: list[Row]) -> None:
    """The library's merge (and every swept launch) against the v12 merge, both into NaN-poisoned outputs."""
    old = torch.full_like(q, float("nan"))
    run_merge(v12_merge, buf, old)
    for name, fn in ((LIBRARY, merge_partials), *((n, library_rows(r)) for n, r in SWEEP)):
        new = torch.full_like(q, float("nan"))
        run_merge(fn, buf, new)
        same_poison = bool(torch.equal(old.isnan(), new.isnan()))
        written = ~old.isnan()
        diff = float((new[written].float() - old[written].float()).abs().max()) if bool(written.any()) else 0.0
        scale = float(old[written].float().abs().max()) if bool(written.any()) else 1.0
        ok = same_poison and diff <= 1e-2 * scale
        rows.append(Row("check", label, f"{name} vs v12 merge", float("nan"),
                        note=f"{'ok' if ok else 'MISMATCH'}: poison pattern equal {same_poison}, max |diff| {diff:.2e} "
                             f"(max |out| {scale:.2e}), {int(written.sum()) // HEAD_DIM} rows written, "
                             f"rel {rel_diff(new[written], old[written]):.1e}"))


def time_merge(buf: dict[str, Any], label: str, q: torch.Tensor, repeat: int, copy_tbs: float, sweep: bool,
               rows: list[Row]) -> dict[str, float]:
    """The merge alone: the v12 merge vs the library's (and the sweep), interleaved ``repeat`` times. Returns the
    best time of each."""
    out = torch.empty_like(q)
    fns = {BASELINE: v12_merge, LIBRARY: merge_partials}
    if sweep:
        fns.update({name: library_rows(r) for name, r in SWEEP})
    nbytes = merge_bytes(buf)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            times[name].append(bench_ms(lambda fn=fn: run_merge(fn, buf, out), rep_ms=60))
    floor_ms = nbytes / (copy_tbs * 1e9)
    base = times[BASELINE]
    for name, ts in times.items():
        t = min(ts)
        rows.append(Row("merge", label, name, t, tb_per_s=nbytes / t / 1e9,
                        note=f"runs {' / '.join(f'{x:.2f}' for x in ts)} ms; {min(base) / t:.3f}x v12 (best/best), "
                             f"{sum(base) / sum(ts):.3f}x (mean/mean); {nbytes / 1e9:.1f} GB moved, floor "
                             f"{floor_ms:.2f} ms at the run's copy rate {copy_tbs:.2f} TB/s = {floor_ms / t:.0%} of it"))
    return {name: min(ts) for name, ts in times.items()}


def patched(module, merge: Callable, fn: Callable) -> Callable:
    """``fn`` with ``module.merge_partials`` (looked up at call time) set to ``merge`` for each call."""
    def run():
        module.merge_partials = merge
        return fn()
    return run


def prefill_rows(case, sel: torch.Tensor, label: str, merges: dict[str, Callable], repeat: int,
                 rows: list[Row]) -> None:
    """The whole default prefill (bf16 and int8 parts) with each merge, interleaved."""
    from kernels.msa import merge as merge_mod
    from kernels.msa import prefill

    try:
        for dtype_name, knobs in (("bf16 parts", {"partial_dtype": torch.bfloat16}), ("int8 parts", {"partial_dtype": torch.int8})):
            fns, outs = {}, {}
            for name, merge in merges.items():
                prefill.merge_partials = merge
                fn, outs[name] = timed_attention(case, sel, **knobs)
                fns[name] = patched(prefill, merge, fn)
            times: dict[str, list[float]] = {name: [] for name in fns}
            for _ in range(repeat):
                for name, fn in fns.items():
                    times[name].append(bench_ms(fn))
            base = next(iter(times))
            for name, ts in times.items():
                rows.append(Row("prefill", f"{label}, {dtype_name}", f"default prefill, {name}", min(ts),
                                note=f"runs {' / '.join(f'{x:.2f}' for x in ts)} ms; {min(times[base]) / min(ts):.3f}x "
                                     f"(best/best), {sum(times[base]) / sum(ts):.3f}x (mean/mean) the v12 merge; "
                                     f"out vs v12 merge's {rel_diff(outs[name], outs[base]):.1e}"))
    finally:
        prefill.merge_partials = merge_mod.merge_partials


def decode_rows(merges: dict[str, Callable], repeat: int, rows: list[Row], batch: int = 64, ctx: int = 131072) -> None:
    """Decode B x ctx (graph replay, as msa_bench) with each merge, interleaved."""
    from kernels.msa import decode
    from kernels.msa import merge as merge_mod
    from kernels.msa.indexer import msa_index_topk_triton
    from kernels.msa.inputs import make_case

    case = make_case([ctx] * batch, [1] * batch, HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=batch + ctx)
    sel = msa_index_topk_triton(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc,
                                case.seq_lens, max_query_len=1)
    outs = {name: torch.empty_like(case.q) for name in merges}
    try:
        times: dict[str, list[float]] = {name: [] for name in merges}
        for _ in range(repeat):
            for name, merge in merges.items():
                decode.merge_partials = merge
                out = outs[name]
                times[name].append(graph_ms(lambda out=out: decode.sparse_decode_triton(
                    case.q, case.kv_cache, sel, case.block_table, case.seq_lens, 1, HEAD_DIM ** -0.5, out)))
        base = next(iter(times))
        for name, ts in times.items():
            rows.append(Row("decode", f"B={batch} ctx={ctx // 1024}K", f"split-K + {name} (graph)", min(ts),
                            note=f"runs {' / '.join(f'{x * 1e3:.1f}' for x in ts)} us; "
                                 f"{min(times[base]) / min(ts):.3f}x the v12 merge; "
                                 f"out vs v12 merge's {rel_diff(outs[name], outs[base]):.1e}"))
    finally:
        decode.merge_partials = merge_mod.merge_partials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=131072)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quick", action="store_true",
                        help="only the merge alone on the default path's buffers (no sweep, other paths, prefill, decode)")
    args = parser.parse_args()
    from kernels.msa import cuda
    from kernels.msa.indexer import msa_index_topk_triton
    from kernels.msa.inputs import make_case

    rows = PrintedRows()
    if args.json:
        rows.jsonl = args.json.with_suffix(".jsonl")
    copy_tbs, _ = ceilings()
    n = args.n
    case = make_case([n], [n], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=n)
    sel = msa_index_topk_triton(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc,
                                case.seq_lens, max_query_len=n)
    shape = f"N={n // 1024}K indexer sel"
    kv_cuda = cuda.choose_kv(case.q, case.kv_cache, torch.int8) is None
    rows.append(Row("setup", shape, "KV-outer stage", float("nan"),
                    note=f"{'CUDA' if kv_cuda else 'Triton'} (auto); copy {copy_tbs:.2f} TB/s (read + write)"))
    for dtype_name, dtype in (("bf16 parts", None), ("int8 parts", torch.int8)):
        label = f"{shape}, default path, {dtype_name}"
        buf = default_buffers(case, sel, dtype)
        guarded(rows, "check", label, check_merge, buf, label, case.q, rows)
        guarded(rows, "merge", label, time_merge, buf, label, case.q, args.repeat, copy_tbs, not args.quick, rows)
        del buf
        torch.cuda.empty_cache()
    if args.quick:
        return finish(rows, args.json)
    for dtype_name, dtype in (("bf16 parts", None), ("int8 parts", torch.int8)):
        label = f"{shape}, KV-outer only, {dtype_name}"
        buf = kv_only_buffers(case, sel, dtype)
        guarded(rows, "check", label, check_merge, buf, label, case.q, rows)
        guarded(rows, "merge", label, time_merge, buf, label, case.q, args.repeat, copy_tbs, False, rows)
        del buf
        torch.cuda.empty_cache()
    if kv_cuda:
        label = f"{shape}, int8 parts + bf16 carrier side buffer (unfused step)"
        buf = default_buffers(case, sel, torch.int8, unfused=True)
        guarded(rows, "check", label, check_merge, buf, label, case.q, rows)
        guarded(rows, "merge", label, time_merge, buf, label, case.q, args.repeat, copy_tbs, False, rows)
        del buf
        torch.cuda.empty_cache()
    merges = {BASELINE: v12_merge, LIBRARY: merge_partials}
    guarded(rows, "prefill", shape, prefill_rows, case, sel, shape, merges, args.repeat, rows)
    del case, sel
    torch.cuda.empty_cache()
    guarded(rows, "decode", "B=64 ctx=128K", decode_rows, merges, args.repeat, rows)
    finish(rows, args.json)


def finish(rows: list[Row], json_path: Path | None) -> None:
    """The JSON file (if asked) and the table, last."""
    header = (f"{torch.cuda.get_device_name()} | torch {torch.__version__} | triton {triton.__version__} | "
              f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC")
    if json_path:
        json_path.write_text(json.dumps({"header": header, "rows": [asdict(r) for r in rows]}, indent=1))
    print_table(rows, header)


if __name__ == "__main__":
    main()
