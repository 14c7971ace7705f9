"""Where the FP8 tile-outer step's error comes from (v18y), by emulating its arithmetic on the CPU: per (token, KV
head) of a 128K-shaped case's last tokens, the exact softmax over the selected visible keys of the dequantised fp8
cache (the reference the GPU tests use) against the step's roundings one at a time — Q per row to e4m3 (scale
amax / 448, as ``load_q_fp8``), P = 2^(s - max + 8) to e4m3 (``to_fp8``; P_OFF 8), and the normaliser from the
fp32 P (the step's ``st.l``) or from the rounded P; and Q as two e4m3 terms at one row scale (variant 30, v18z:
the rounding and its residual, S from two FP8 products). Unit-normal inputs (``make_case``) and ``peaked_case`` (a few
keys take most of the weight, as in trained attention). No GPU: the numbers say which rounding to change, the GPU
tests measure the kernel itself (``test_fp8_step.py``, ``test_m3_hard_inputs.py``).

    python -m kernels.bench.fp8_error_model [--n 8192] [--tail 64] [--jsonl OUT/fp8_error.jsonl]
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from kernels.msa.inputs import (
    MSACase,
    dequantize_kv_fp8,
    local_selection,
    make_case,
    peaked_case,
    quantize_kv_fp8,
)

FP8_MAX = 448.0
P_OFF = 8
VARIANTS = ("Q and P in e4m3, l from fp32 P (the step)", "Q and P in e4m3, l from e4m3 P", "Q in e4m3 only",
            "P in e4m3 only", "Q as two e4m3 terms at one row scale (hi + lo), P in e4m3")


def e4m3(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float8_e4m3fn).float()


def row_outputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each variant's attention output (and the exact one, "exact") for queries q [G, D] over keys k, v [n, D]."""
    d = q.shape[-1]
    amax = q.abs().amax(-1, keepdim=True).clamp_min(1e-12)
    hi = e4m3(q / amax * FP8_MAX)
    qq = hi * amax / FP8_MAX
    # variant 30 (fp8_q_terms=2): Q ~ hi + lo, lo the e4m3 of hi's residual at the same row scale (e4m3x8_residual)
    q2 = (hi + e4m3(q / amax * FP8_MAX - hi)) * amax / FP8_MAX
    outs = {"exact": torch.softmax(q @ k.T / math.sqrt(d), -1) @ v}
    for name, q_used, round_p, l_rounded in ((VARIANTS[0], qq, True, False), (VARIANTS[1], qq, True, True),
                                             (VARIANTS[2], qq, False, False), (VARIANTS[3], q, True, False),
                                             (VARIANTS[4], q2, True, False)):
        s = q_used @ k.T * (math.log2(math.e) / math.sqrt(d))
        p = torch.exp2(s - s.amax(-1, keepdim=True) + P_OFF)
        pq = e4m3(p) if round_p else p
        outs[name] = pq @ v / (pq if l_rounded else p).sum(-1, keepdim=True)
    return outs


def errors(case: MSACase, sel: torch.Tensor, tail: int) -> dict[str, float]:
    """‖variant − exact‖ / ‖exact‖ over the last ``tail`` tokens of the (single-request) case, every KV head."""
    kv8, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
    kv = dequantize_kv_fp8(kv8, k_scale, v_scale).cpu()
    d, hkv = case.q.shape[-1], kv.shape[1]
    group = case.q.shape[1] // hkv
    table, n = case.block_table[0].cpu(), case.q.shape[0]
    got: dict[str, list[torch.Tensor]] = {}
    for t in range(n - tail, n):
        for h in range(hkv):
            blocks = [b for b in sel[h, t].tolist() if b >= 0]
            keys = torch.cat([kv[table[b], h] for b in blocks])
            visible = torch.cat([torch.arange(b * 128, b * 128 + 128) for b in blocks]) <= t
            outs = row_outputs(case.q[t, h * group:(h + 1) * group].float().cpu(), keys[visible, :d],
                               keys[visible, d:])
            for name, o in outs.items():
                got.setdefault(name, []).append(o)
    exact = torch.cat(got.pop("exact")).double()
    return {name: float((torch.cat(o).double() - exact).norm() / exact.norm()) for name, o in got.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8192, help="tokens of the one request (its queries: all of them)")
    parser.add_argument("--tail", type=int, default=64, help="last tokens whose outputs are compared")
    parser.add_argument("--jsonl", type=Path)
    args = parser.parse_args()
    base = make_case([args.n], [args.n], 64, 4, 128, torch.bfloat16, "cpu", seed=61)
    rows = []
    for label, case in (("unit normals", base), ("peaked_case", peaked_case(base))):
        sel = local_selection(case.query_start_loc, case.seq_lens, 4, 0.9, seed=63)
        for variant, err in errors(case, sel, args.tail).items():
            rows.append({"inputs": label, "variant": variant, "rel_err": err})
    print("| inputs (f = 0.9 selections) | emulated rounding | error vs the exact softmax |\n| --- | --- | --- |")
    for row in rows:
        print(f"| {row['inputs']} | {row['variant']} | {row['rel_err']:.2e} |")
    if args.jsonl:
        with args.jsonl.open("a") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)


if __name__ == "__main__":
    main()
