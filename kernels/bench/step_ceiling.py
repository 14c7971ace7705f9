"""How fast can any attention kernel on this card do the tile-outer step's work? The bf16 goal (128K, f >= 0.9,
<= 16 ms) asks the step for ~650 TFLOP/s (NOTES v16); this bench measures, in one process, what the best dense
attention kernels torch ships (cuDNN's, FlashAttention-2's, the memory-efficient one) reach on the step's own work
shape, and sets our step beside them.

The step's work item at M3's group (16 query heads per KV head) is 8 tokens x 16 heads = 128 query rows against the
tile's union of ~16 blocks of 128 keys (2048 keys, head_dim 128), 65,536 items at 128K. Dense kernels get that shape
with no gather, no mask and no fold: q [items, 1, 128, 128], k / v [items, 1, 2048, 128], non-causal (the 16 heads
flattened into the query rows: they share K/V, the most favourable form). Timed on ``--items`` items (K/V of every
item are distinct, so the bytes are the real ones' upper bound) and scaled to 128K's count. Also the same kernels on a
long dense sequence (4 x 16 heads x 8192 tokens, non-causal), the card's FlashAttention-class rate, and a bf16 GEMM.
Our step: the tile-outer kernel's device time in the default prefill at 128K (torch.profiler, as prefill_profile),
its MMA work counted from the split (union blocks x 128 rows x 128 keys x 128 x 4 per work item).

    python -m kernels.bench.step_ceiling [--items 4096] [--json OUT/ceiling.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from kernels.bench.msa_bench import HEAD_DIM, HEADS, KV_HEADS, Row, bench_ms, ceilings, print_table
from kernels.bench.prefill_profile import profile_kinds
from kernels.bench.tree_compare import selection

N = 131072
ROWS, UNION_KEYS = 128, 16 * 128
"""The step's item at 16 query heads per KV head: 8 tokens x 16 heads, a 16-block union."""
BACKENDS = ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION")


def sdpa_ms(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str) -> float | None:
    """Median time of torch's SDPA on one backend, None where the backend refuses the inputs."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def run() -> torch.Tensor:
        with sdpa_kernel(getattr(SDPBackend, backend)):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v)

    try:
        run()
    except RuntimeError:
        return None
    return bench_ms(run)


def dense_rows(items: int, rows: list[Row]) -> None:
    """The step's item shape and a long sequence, on every SDPA backend."""
    items_128k = N // (ROWS // (HEADS // KV_HEADS)) * KV_HEADS
    gen = torch.Generator(device="cuda").manual_seed(1)
    q = torch.randn(items, 1, ROWS, HEAD_DIM, device="cuda", dtype=torch.bfloat16, generator=gen)
    k = torch.randn(items, 1, UNION_KEYS, HEAD_DIM, device="cuda", dtype=torch.bfloat16, generator=gen)
    v = torch.randn_like(k)
    flops = 4.0 * items * ROWS * UNION_KEYS * HEAD_DIM
    for backend in BACKENDS:
        t = sdpa_ms(q, k, v, backend)
        if t is not None:
            scaled = t * items_128k / items
            rows.append(Row("step shape", f"{items} items of 128 rows x 2048 keys (128K: {items_128k})",
                            f"dense SDPA, {backend}", scaled, flops / t / 1e9,
                            note=f"{t:.2f} ms for {items} items, x {items_128k / items:g} for 128K"))
    del q, k, v
    q = torch.randn(4, HEADS // KV_HEADS, 8192, HEAD_DIM, device="cuda", dtype=torch.bfloat16, generator=gen)
    k, v = torch.randn_like(q), torch.randn_like(q)
    flops = 4.0 * 4 * (HEADS // KV_HEADS) * 8192 * 8192 * HEAD_DIM
    for backend in BACKENDS:
        t = sdpa_ms(q, k, v, backend)
        if t is not None:
            rows.append(Row("long sequence", "4 x 16 heads x 8192 tokens, non-causal", f"dense SDPA, {backend}", t,
                            flops / t / 1e9))


def step_mma_flops(case, sel: torch.Tensor) -> float:  # noqa: ANN001 - a kernels.msa.inputs.MSACase
    """The tile-outer step's MMA work on this selection: every work item's union blocks x 128 x 128 x 128 x 4."""
    from kernels.msa.merge import device_positions, device_requests
    from kernels.msa.tile_outer import tile_unions

    n = case.q.shape[0]
    pos = device_positions(case.query_start_loc, case.seq_lens, n)
    split = tile_unions(sel, device_requests(case.query_start_loc, n), pos, case.block_table)
    work = split.work[: int(split.num_work.item())].long()
    blocks = split.union_size.flatten()[work].long().sum().item()
    return 4.0 * blocks * ROWS * 128 * HEAD_DIM


def our_rows(kinds: list[str], rows: list[Row]) -> None:
    from kernels.msa.inputs import make_case

    case = make_case([N], [N], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=N)  # profile_kinds' case
    for profiled in profile_kinds(N, kinds, 5):
        kind, wall = profiled["kind"], profiled["wall_ms"]
        step = sum(ms for name, ms in profiled["kernels_ms"].items() if "tile_outer_kernel" in name)
        flops = step_mma_flops(case, selection(case, kind, N))
        rows.append(Row("ours", f"N=128K {kind}", "tile-outer step (bf16 default), in the default prefill", step,
                        flops / step / 1e9, note=f"whole prefill {wall:.2f} ms; step MMA work {flops / 1e12:.2f} TFLOP"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=4096, help="items of the step's shape timed (then scaled)")
    parser.add_argument("--kinds", default="f=1.0,f=0.9")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows: list[Row] = []
    _, gemm = ceilings()
    rows.append(Row("card", "8192^3", "bf16 GEMM (torch.matmul)", 2 * 8192 ** 3 / gemm / 1e9, gemm))
    dense_rows(args.items, rows)
    our_rows([k for k in args.kinds.split(",") if k], rows)
    for row in rows:
        if row.tflops is not None and row.section != "card":
            row.note = f"{row.tflops / gemm:.0%} of the GEMM rate" + (f"; {row.note}" if row.note else "")
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
    print_table(rows, f"The tile-outer step's work against dense attention kernels, {torch.cuda.get_device_name()}")


if __name__ == "__main__":
    main()
