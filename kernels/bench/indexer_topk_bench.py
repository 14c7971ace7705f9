"""The indexer's running top-k update, this tree vs a baseline checkout, in one process (v15x).

Loads the baseline's ``kernels/msa/indexer.py`` under another module name (``--baseline`` = a checkout such as
.devtree/v14), then on one GPU:
1. checks this tree's selections == the baseline's, id for id, at N tokens (M3 shapes: 4 index heads, d = 128) on
   bf16 and on e4m3 index q + cache, at the default tile and every swept tile shape, and on exact ties (integer
   inputs: equal block scores everywhere) at top_k 8 / 16 / 32;
2. times, in ``--rounds`` alternated rounds (median of do_bench per sample), the baseline's indexer, this tree's
   (the default tile and ``--configs`` rows x stages x warps), the no-update diagnostic (``no_update=True``: the
   bookkeeping's cost, wrong selections by design), and the whole layer (indexer + default attention on its
   selections, as tree_compare's row) with either indexer; a row whose selections differ from the baseline's is not
   timed;
3. prints a table (median, all samples, ratio baseline / this tree by medians) last; ``--out`` keeps JSON.

    python -m kernels.bench.indexer_topk_bench --baseline ../v14 --out $OUT/indexer_topk.json

On a CPU (TRITON_INTERPRET=1) only as a smoke test: tiny --n, --tie-n 0, --no-layer, wall-clock times (minutes).
The v15x runs (results/indexer_topk_v15x_call*.log) timed candidate updates in one tree (then ``--updates``): today's
is call 2's "u3"; call 1's "v15x" and call 2's "u1" computed thr / victim after the update (removed: no faster than
v14 in bf16). The v14 update itself is now only in a baseline checkout.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch

E4M3 = torch.float8_e4m3fn
HEADS, KV_HEADS, HEAD_DIM = 64, 4, 128
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
"""CPU (TRITON_INTERPRET=1, small --n, wall-clock times): a smoke test of this script only."""


def load_baseline(tree: Path) -> ModuleType:
    """The baseline checkout's indexer module, imported as ``baseline_indexer`` (its imports resolve here)."""
    spec = importlib.util.spec_from_file_location("baseline_indexer", tree / "kernels" / "msa" / "indexer.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"no indexer at {tree}/kernels/msa/indexer.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["baseline_indexer"] = mod
    spec.loader.exec_module(mod)
    return mod


def bench_ms(fn: Callable[[], object], rep: int) -> float:
    import triton.testing

    if DEVICE == "cpu":
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3
    return float(triton.testing.do_bench(fn, warmup=25, rep=rep, return_mode="median"))


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def integer_inputs(n: int, levels: int, dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """index q [n, 4, 128] and an index cache of n tokens with values in {-levels..levels}: exact block scores."""
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    q = torch.randint(-levels, levels + 1, (n, KV_HEADS, HEAD_DIM), generator=gen, device=DEVICE)
    k = torch.randint(-levels, levels + 1, (-(-n // 128) + 1, 128, HEAD_DIM), generator=gen, device=DEVICE)  # make_case: +1 page
    return q.to(torch.float32).to(dtype), k.to(torch.float32).to(dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="checkout whose indexer is the baseline")
    parser.add_argument("--n", type=int, default=131072)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--configs", default="",
                        help="extra tile shapes: dtype:rows x stages x warps, comma-separated; "
                             "v15x call 1 swept bf16:128x4x8,bf16:64x4x4,fp8:128x3x4")
    parser.add_argument("--tie-n", type=int, default=16384, help="tokens of the exact-ties checks (0: none)")
    parser.add_argument("--no-layer", action="store_true", help="skip the whole-layer rows")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from kernels.msa import indexer as ours
    from kernels.msa.inputs import make_case
    from kernels.msa.prefill import sparse_attention_triton

    base = load_baseline(args.baseline)
    n = args.n
    t0 = time.time()
    case = make_case([n], [n], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, DEVICE, seed=n)
    Meta = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    meta: Meta = (case.block_table, case.query_start_loc, case.seq_lens)
    inputs = {"bf16": (case.index_q, case.index_k_cache), "fp8": (case.index_q.to(E4M3), case.index_k_cache.to(E4M3))}
    device = torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu"
    result: dict = {"n": n, "device": device, "checks": {}, "samples": {}}

    def ours_fn(dt: str, rows: int, stages: int, warps: int, no_update: bool = False, top_k: int = 16,
                qk: tuple | None = None, m: Meta = meta, qlen: int = n) -> Callable[[], torch.Tensor]:
        q, k = qk or inputs[dt]
        out = torch.empty((KV_HEADS, q.shape[0], top_k), dtype=torch.int32, device=DEVICE)
        return lambda: ours._launch(q, k, m[0], m[1], m[2], out, top_k, 0, 1, qlen, rows, stages, warps, no_update)

    def base_fn(dt: str, top_k: int = 16, qk: tuple | None = None, m: Meta = meta,
                qlen: int = n) -> Callable[[], torch.Tensor]:
        q, k = qk or inputs[dt]
        return lambda: base.msa_index_topk_triton(q, k, *m, top_k=top_k, max_query_len=qlen)

    rows: dict[str, Callable[[], torch.Tensor]] = {}
    shape = {dt: (ours.FP8_CONFIG if dt == "fp8" else ours.WIDE_CONFIG) for dt in ("bf16", "fp8")}
    for dt in ("bf16", "fp8"):
        default = shape[dt]
        rows[f"{dt} indexer, baseline"] = base_fn(dt)
        rows[f"{dt} indexer, this tree {'x'.join(map(str, default))}"] = ours_fn(dt, *default)
        for spec in filter(None, args.configs.split(",")):
            cdt, tile = spec.split(":")
            if cdt == dt:
                r, s, w = (int(x) for x in tile.split("x"))
                rows[f"{dt} indexer, this tree {tile}"] = ours_fn(dt, r, s, w)
        rows[f"{dt} indexer, no update (diagnostic)"] = ours_fn(dt, *default, no_update=True)

    # 1. selections == the baseline's
    for name, fn in list(rows.items()):
        if "baseline" in name or "diagnostic" in name:
            continue
        dt = name.split()[0]
        want = rows[f"{dt} indexer, baseline"]().clone()
        try:
            got = fn().clone()
            sync()
        except Exception as exc:  # noqa: BLE001 - an experiment that does not compile drops its row, not the run
            print(f"check {name}: FAILED {type(exc).__name__}: {str(exc)[:300]}", flush=True)
            result["checks"][name] = f"failed: {exc}"[:300]
            continue
        diff = int((want != got).any(-1).sum())
        result["checks"][name] = diff
        if diff:
            rows.pop(name)  # not timed: a faster wrong kernel is no candidate
        print(f"check {name}: {diff} rows differ of {want.shape[0] * want.shape[1]}", flush=True)
    tie_n = max(args.tie_n, 128)
    tie_meta_case = make_case([tie_n], [tie_n], KV_HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, DEVICE,
                              seed=5)
    tm = (tie_meta_case.block_table, tie_meta_case.query_start_loc, tie_meta_case.seq_lens)
    for dt, dtype in (("bf16", torch.bfloat16), ("fp8", E4M3)) if args.tie_n else ():
        for levels in (1, 0):
            qk = integer_inputs(args.tie_n, levels, dtype, seed=7 + levels)
            for top_k in ((8, 16, 32) if dt == "bf16" else (16,)):
                want = base_fn(dt, top_k, qk, tm, args.tie_n)().clone()
                got = ours_fn(dt, *shape[dt], top_k=top_k, qk=qk, m=tm, qlen=args.tie_n)().clone()
                sync()
                diff = int((want != got).any(-1).sum())
                result["checks"][f"ties {dt} levels={levels} top_k={top_k}"] = diff
                print(f"check ties {dt} levels={levels} top_k={top_k}: {diff} rows differ", flush=True)
    print(f"checks done in {time.time() - t0:.0f} s", flush=True)

    # 2. alternated timing rounds
    if not args.no_layer:
        out = torch.empty_like(case.q)

        def layer(index: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
            return lambda: sparse_attention_triton(case.q, case.kv_cache, index(), *meta, HEAD_DIM ** -0.5, out)

        for dt in ("bf16", "fp8"):
            default = shape[dt]
            rows[f"{dt} whole layer, baseline indexer"] = layer(base_fn(dt))
            if result["checks"].get(f"{dt} indexer, this tree {'x'.join(map(str, default))}") == 0:
                rows[f"{dt} whole layer, this tree's indexer"] = layer(ours_fn(dt, *default))
    samples: dict[str, list[float]] = defaultdict(list)
    for r in range(args.rounds):
        for name, fn in rows.items():
            samples[name].append(bench_ms(fn, rep=500 if "layer" in name else 200))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in samples.items()), flush=True)
    result["samples"] = samples
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))

    # 3. table
    print(f"\n{result['device']}, N = {n}, {args.rounds} alternated rounds, {time.time() - t0:.0f} s")
    print("| row | median ms | all samples | baseline / row (medians) |")
    print("| --- | --- | --- | --- |")
    for name, xs in samples.items():
        ref = samples[name.replace(name.split(", ", 1)[1], "baseline" if "indexer," in name else "baseline indexer")]
        print(f"| {name} | {statistics.median(xs):.2f} | {' / '.join(f'{x:.2f}' for x in xs)} | "
              f"{statistics.median(ref) / statistics.median(xs):.3f}x |")
    print("checks (rows differing from the baseline): " + ", ".join(f"{k}: {v}" for k, v in result["checks"].items()))


if __name__ == "__main__":
    main()
