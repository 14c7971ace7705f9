"""v15y: the cooperative 128-row KV-outer variants (13, 14: both consumer warpgroups on every 128-row Q stage) against
the default variant 7, in one process: correctness at 128K (each variant's parts and LSEs bit for bit against
variant 7's on the default split CSR and on every entry, bf16 and int8 parts, into poisoned buffers; the whole
default prefill with each as the default against variant 7's output and the fp32 reference on the last tokens; the
same on a 32K chunk after 1M of context), then timings interleaved over ``--rounds`` alternated rounds: the stage
alone (default split CSR, 128K indexer selections) and the whole default prefill (128K indexer selections, bf16 and
int8 parts; the 32K chunk at 1M). Rows print as measured and go to ``--out`` (JSON lines); the table (medians, all
samples, ratios vs variant 7) is printed last.

    python -m kernels.bench.kv_coop_bench [--variants 7,13,14] [--rounds 5] [--out $OUT/kv_coop.jsonl]
"""
from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import torch

from kernels.bench.kv_outer_cuda_bench import GROUP, all_csr, default_csr
from kernels.bench.msa_bench import HEAD_DIM, HEADS, KV_HEADS, bench_ms, reference_tail, rel_diff

ROWS: list[dict] = []


def emit(out: Path | None, **row) -> None:
    ROWS.append(row)
    print(" | ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    if out is not None:
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")


def stage(case, csr, pos, top_k: int, variant: int, int8: bool, bufs=None):
    """The CUDA KV-outer stage with ``variant`` into ``bufs`` (or new buffers); returns (parts, lse[, scale])."""
    from kernels.msa.cuda import kv_outer_partials_cuda

    return kv_outer_partials_cuda(case.q, case.kv_cache, case.block_table, case.seq_lens, csr, pos, top_k,
                                  HEAD_DIM ** -0.5, 128, variant=variant, out=bufs,
                                  partial_dtype=torch.int8 if int8 else None)


def poisoned(n: int, top_k: int, int8: bool):
    shape = (KV_HEADS, n, top_k, GROUP)
    parts = (torch.full((*shape, HEAD_DIM), -128, dtype=torch.int8, device="cuda") if int8
             else torch.full((*shape, HEAD_DIM), float("nan"), dtype=torch.bfloat16, device="cuda"))
    rows = [torch.full(shape, float("nan"), dtype=torch.float32, device="cuda") for _ in range(1 + int8)]
    return (parts, *rows)


def bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bits as integers (NaN and -0 compare by their bits)."""
    return t.view({torch.bfloat16: torch.int16, torch.float32: torch.int32}.get(t.dtype, t.dtype))


def check_stage(case, sel, csr, pos, label: str, variants: list[int], out: Path | None) -> bool:
    """Each variant's parts, LSEs (and int8 scales) equal variant 7's bit for bit on every listed entry; unlisted
    entries keep the poison."""
    n, top_k = case.q.shape[0], sel.shape[2]
    listed = torch.zeros(sel.numel(), dtype=torch.bool, device="cuda")
    listed[csr[0][: int(csr[1][-1])].long()] = True
    listed = listed.view(sel.shape)
    ok_all = True
    for int8 in (False, True):
        want = stage(case, csr, pos, top_k, 7, int8, poisoned(n, top_k, int8))
        for v in variants:
            if v == 7:
                continue
            got = stage(case, csr, pos, top_k, v, int8, poisoned(n, top_k, int8))
            torch.cuda.synchronize()
            same, untouched = True, True
            for h in range(sel.shape[0]):  # by KV head and 16K tokens: the masked copies stay ~1 GB at 128K
                for t0 in range(0, n, 16384):
                    lh, uh = listed[h, t0:t0 + 16384], ~listed[h, t0:t0 + 16384]
                    same &= all(torch.equal(bits(g[h, t0:t0 + 16384][lh]), bits(w[h, t0:t0 + 16384][lh]))
                                for g, w in zip(got, want, strict=True) if g is not None)
                    part = got[0][h, t0:t0 + 16384][uh]
                    untouched &= bool((part == -128).all()) if int8 else bool(torch.isnan(part).all())
                    untouched &= all(bool(torch.isnan(t[h, t0:t0 + 16384][uh]).all()) for t in got[1:]
                                     if t is not None)
            ok = same and untouched
            ok_all &= ok
            emit(out, kind="stage check", case=label, variant=v, parts="int8" if int8 else "bf16",
                 entries=int(listed.sum()), bit_identical_to_v7=same, unlisted_untouched=untouched, ok=ok)
            del got
        del want
        torch.cuda.empty_cache()
    return ok_all


def with_default(variant: int, fn):
    from kernels.msa import cuda

    old = cuda.KV_DEFAULT_VARIANT, cuda.KV_DEFAULT_INT8_VARIANT
    cuda.KV_DEFAULT_VARIANT = cuda.KV_DEFAULT_INT8_VARIANT = variant
    try:
        return fn()
    finally:
        cuda.KV_DEFAULT_VARIANT, cuda.KV_DEFAULT_INT8_VARIANT = old


def whole(args: tuple[torch.Tensor, ...], res: torch.Tensor, variant: int, dtype: torch.dtype | None) -> object:
    """The whole default prefill into ``res`` with ``variant`` as the KV-outer default."""
    from kernels.msa.prefill import sparse_attention_triton

    q, kv_cache, sel, table, qsl, lens = args
    return with_default(variant, lambda: sparse_attention_triton(q, kv_cache, sel, table, qsl, lens, out=res,
                                                                 partial_dtype=dtype))


def check_prefill(case, sel, label: str, variants: list[int], out: Path | None, tail: int = 32) -> bool:
    """The whole default prefill with each variant as the default: = variant 7's output bit for bit, and the last
    ``tail`` tokens vs the fp32 reference."""
    from kernels.msa.prefill import sparse_attention_triton

    args = (case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens)
    ok_all = True
    for dtype in (None, torch.int8):
        want = with_default(7, lambda dtype=dtype: sparse_attention_triton(*args, partial_dtype=dtype))
        for v in variants:
            got = torch.full_like(case.q, float("nan"))
            with_default(v, lambda got=got, dtype=dtype: sparse_attention_triton(*args, out=got, partial_dtype=dtype))
            same = bool(torch.equal(got, want))
            ref = reference_tail(case, sel, got, tail)
            ok = same and ref < 2e-2 and not bool(torch.isnan(got).any())
            ok_all &= ok
            emit(out, kind="prefill check", case=label, variant=v, parts="int8" if dtype else "bf16",
                 equal_to_v7=same, ref_err_tail=ref, vs_v7=rel_diff(got, want), ok=ok)
    return ok_all


def timed_rounds(label: str, runs: Mapping[str, Callable[[], object]], rounds: int, out: Path | None) -> None:
    """Every run once per round, rounds alternated (drift shows as a trend, not a difference)."""
    for r in range(rounds):
        for name, fn in runs.items():
            emit(out, kind="time", case=label, run=name, round=r + 1, ms=bench_ms(fn))


def table(base: str = "v7") -> None:
    samples: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in ROWS:
        if row["kind"] == "time":
            samples[(row["case"], row["run"])].append(row["ms"])
    print("\n## table (medians; all samples; ratio = v7's median / this median, > 1 is faster)")
    print("| case | run | median ms | all samples | vs v7 |")
    print("| --- | --- | --- | --- | --- |")
    for (case, run), xs in samples.items():
        b = samples.get((case, run.replace(run.split()[0], base, 1)))
        ratio = f"{statistics.median(b) / statistics.median(xs):.3f}x" if b else "-"
        print(f"| {case} | {run} | {statistics.median(xs):.2f} | {' / '.join(f'{x:.2f}' for x in xs)} | {ratio} |")
    checks = [r for r in ROWS if r["kind"].endswith("check")]
    print(f"checks: {sum(r['ok'] for r in checks)} ok of {len(checks)}")


def main() -> None:
    from kernels.msa import cuda
    from kernels.msa.indexer import msa_index_topk_triton
    from kernels.msa.inputs import make_case

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="7,13,14")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunk-rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=131072)
    parser.add_argument("--out", type=Path, default=None)
    a = parser.parse_args()
    variants = [int(v) for v in a.variants.split(",")]
    lib = cuda.load()
    emit(a.out, kind="build", library=Path(lib._name).name, device=torch.cuda.get_device_name(),
         smem_bytes={v: lib.msa_kv_outer_sm90_smem_bytes(v) for v in variants})

    n = a.n
    case = make_case([n], [n], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=n)
    sel = msa_index_topk_triton(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc,
                                case.seq_lens, max_query_len=n)
    label = f"N={n // 1024}K indexer sel"
    dcsr, pos = default_csr(case, sel)
    check_stage(case, sel, dcsr, pos, label + ", default split CSR", variants, a.out)
    acsr, _ = all_csr(case, sel)
    check_stage(case, sel, acsr, pos, label + ", every entry", variants, a.out)
    del acsr
    torch.cuda.empty_cache()
    check_prefill(case, sel, label, variants, a.out)

    top_k = sel.shape[2]
    sbuf = poisoned(n, top_k, False)
    timed_rounds(label + ", stage (default split CSR)",
                 {f"v{v}": partial(stage, case, dcsr, pos, top_k, v, False, sbuf) for v in variants},
                 a.rounds, a.out)
    del sbuf
    torch.cuda.empty_cache()
    args = (case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens)
    res = torch.empty_like(case.q)
    runs = {f"v{v}": partial(whole, args, res, v, None) for v in variants}
    runs |= {f"v{v} int8": partial(whole, args, res, v, torch.int8) for v in variants}
    timed_rounds(label + ", whole default prefill", runs, a.rounds, a.out)
    del case, sel, dcsr, pos, res, runs, args
    torch.cuda.empty_cache()

    chunk, ctx = 32768, 1 << 20
    case = make_case([ctx + chunk], [chunk], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=7)
    sel = msa_index_topk_triton(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc,
                                case.seq_lens, max_query_len=chunk)
    label = "chunk=32K ctx=1M indexer sel"
    dcsr, pos = default_csr(case, sel)
    check_stage(case, sel, dcsr, pos, label + ", default split CSR", variants, a.out)
    check_prefill(case, sel, label, variants, a.out, tail=16)
    args = (case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens)
    res = torch.empty_like(case.q)
    timed_rounds(label + ", whole default prefill",
                 {f"v{v}": partial(whole, args, res, v, None) for v in variants}, a.chunk_rounds, a.out)
    table()


if __name__ == "__main__":
    main()
