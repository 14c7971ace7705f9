"""The issue's two rows that sit at their goal's line, with enough samples to tell a change from the run's noise:
at 128K on the indexer's selections (random inputs), the attention (goal <= 30 ms) and the whole layer (indexer +
attention, goal <= 45 ms). msa_bench times each once (do_bench, 200 ms: four to six calls of the layer), and within
one run its rows moved by 5-10 % (NOTES v19b, second part).

Each round times, in an order that rotates from round to round: the indexer alone, the default prefill alone on the
indexer's selections, and the whole layer (the indexer then the prefill in one call, as msa_bench's layer row). Every
call's time is kept (triton's do_bench, ``return_mode="all"``), and a thread samples the card's SM clock and board
power (nvidia-smi) meanwhile. Prints, per part, the median over all calls, the spread of the rounds' medians and the
clock and power while it ran, then the layer's excess over its two parts; writes JSON. ``--int8`` adds the attention
and the layer with int8 KV-outer partials (``partial_dtype=torch.int8``) to every round: an A/B under the same
sustained load, where the card sits at its power cap and bytes not moved can buy clock (NOTES v19c). ``--vllm-ops
DIR`` (vLLM's M3 Triton files, ``kernels/bench/vllm_standin.py``) adds vLLM's attention on the same selections and
vLLM's whole layer (index_score + topk + sparse_attn) to every round, and prints the goal's same-run ratios: one
card's clock under the cap moves both kernels, so the ratio is what carries from card to card.

    python -m kernels.bench.layer_rounds [--rounds 5] [--rep-ms 1000] [--int8] [--vllm-ops DIR] [--json OUT/x.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

PARTS = ("indexer", "attention", "layer")
SMI_QUERY = ("nvidia-smi", "--query-gpu=clocks.sm,power.draw", "--format=csv,noheader,nounits")


def parse_smi_line(line: str) -> tuple[float, float] | None:
    """(SM clock in MHz, board power in W) from one line of ``SMI_QUERY``'s output; None for anything else."""
    fields = [f.strip() for f in line.split(",")]
    if len(fields) != 2:
        return None
    try:
        return float(fields[0]), float(fields[1])
    except ValueError:
        return None


@dataclass
class CardSampler:
    """Samples (time, SM MHz, W) of GPU 0 from a thread while running; empty where nvidia-smi is missing."""

    period_s: float = 0.1
    samples: list[tuple[float, float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> CardSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(SMI_QUERY, capture_output=True, text=True, timeout=5).stdout
            except (OSError, subprocess.TimeoutExpired):
                return
            parsed = parse_smi_line(out.splitlines()[0]) if out.strip() else None
            if parsed is not None:
                self.samples.append((time.time(), *parsed))
            self._stop.wait(self.period_s)


def card_during(samples: list[tuple[float, float, float]], start: float, end: float) -> dict[str, float | int]:
    """Mean SM clock and power of the samples taken in [start, end], and how many there were."""
    inside = [(mhz, watts) for t, mhz, watts in samples if start <= t <= end]
    if not inside:
        return {"samples": 0}
    return {"samples": len(inside), "sm_mhz": statistics.fmean(m for m, _ in inside),
            "watts": statistics.fmean(w for _, w in inside)}


def summarise(calls: dict[str, list[list[float]]]) -> dict[str, dict[str, float]]:
    """Per part: the median over every call of every round, the lowest and highest round median, the call count."""
    out = {}
    for part, rounds in calls.items():
        medians = [statistics.median(r) for r in rounds if r]
        every = [t for r in rounds for t in r]
        out[part] = {"median_ms": statistics.median(every), "round_min_ms": min(medians),
                     "round_max_ms": max(medians), "calls": len(every)}
    return out


def layer_excess(summary: dict[str, dict[str, float]]) -> float:
    """How much longer the whole layer runs than its two parts timed alone (medians, ms)."""
    return summary["layer"]["median_ms"] - summary["indexer"]["median_ms"] - summary["attention"]["median_ms"]


def rotated(parts: tuple[str, ...], round_index: int) -> list[str]:
    """``parts`` rotated by the round's index: each part runs first, second and last as often."""
    k = round_index % len(parts)
    return list(parts[k:] + parts[:k])


def layer_parts(n: int, int8: bool = False, vllm_ops: Path | None = None) -> dict[str, Callable[[], object]]:
    """The three timed callables on M3's shapes at ``n`` tokens (msa_bench's case and seed); with ``int8`` also
    "attention int8" and "layer int8", the same two with int8 KV-outer partials; with ``vllm_ops`` also
    "vLLM attention" and "vLLM layer"."""
    from kernels.bench.msa_bench import (
        HEAD_DIM,
        HEADS,
        KV_HEADS,
        bench_workspace,
        ours_layer,
        timed_attention,
        vllm_attention,
        vllm_layer,
    )
    from kernels.msa.indexer import msa_index_topk_triton
    from kernels.msa.inputs import make_case

    case = make_case([n], [n], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=n)
    index_args = (case.index_q, case.index_k_cache, case.block_table, case.query_start_loc, case.seq_lens)

    def indexer() -> torch.Tensor:
        return msa_index_topk_triton(*index_args, max_query_len=n)

    sel = indexer()
    knob_sets = {"": {}, " int8": {"partial_dtype": torch.int8}} if int8 else {"": {}}
    fns: dict[str, Callable[[], object]] = {"indexer": indexer}
    for suffix, knobs in knob_sets.items():
        fns["attention" + suffix] = timed_attention(case, sel, workspace=bench_workspace(), **knobs)[0]
        fns["layer" + suffix] = ours_layer(case, n, **knobs)[0]
    if vllm_ops is not None:
        from kernels.bench.vllm_standin import load_vllm_ops

        vllm_sparse, vllm_index = load_vllm_ops(vllm_ops)
        fns["vLLM attention"] = vllm_attention(case, sel, vllm_sparse)[0]
        fns["vLLM layer"] = vllm_layer(case, n, vllm_sparse, vllm_index)[0]
    return fns


def vllm_ratios(summary: dict[str, dict[str, float]]) -> dict[str, float]:
    """vLLM's median over ours per part both were timed for (the goal's "x vLLM", same run, same load)."""
    return {part: summary["vLLM " + part]["median_ms"] / summary[part]["median_ms"]
            for part in ("attention", "layer") if part in summary and "vLLM " + part in summary}


def time_rounds(fns: dict[str, Callable[[], object]], rounds: int, rep_ms: float,
                sampler: CardSampler) -> tuple[dict[str, list[list[float]]], dict[str, list[dict]]]:
    """Every call's time per part and round, and the card's clock and power during each part's timing."""
    import triton.testing

    calls: dict[str, list[list[float]]] = {p: [] for p in fns}
    card: dict[str, list[dict]] = {p: [] for p in fns}
    for r in range(rounds):
        for part in rotated(tuple(fns), r):
            torch.cuda.synchronize()
            start = time.time()
            times = triton.testing.do_bench(fns[part], warmup=25, rep=rep_ms, return_mode="all")
            calls[part].append([float(t) for t in times])
            card[part].append(card_during(sampler.samples, start, time.time()))
            print(f"round {r} {part}: median {statistics.median(calls[part][-1]):.2f} ms over "
                  f"{len(calls[part][-1])} calls; card {card[part][-1]}", flush=True)
    return calls, card


def print_summary(summary: dict[str, dict[str, float]], card: dict[str, list[dict]], header: str) -> None:
    print("\n" + header)
    print("| part | median of every call | round medians (low - high) | calls | SM clock | power |")
    print("| --- | --- | --- | --- | --- | --- |")
    for part, s in summary.items():
        seen = [c for c in card[part] if c.get("samples")]
        mhz = f"{statistics.fmean(c['sm_mhz'] for c in seen):.0f} MHz" if seen else "n/a"
        watts = f"{statistics.fmean(c['watts'] for c in seen):.0f} W" if seen else "n/a"
        print(f"| {part} | {s['median_ms']:.2f} ms | {s['round_min_ms']:.2f} - {s['round_max_ms']:.2f} ms | "
              f"{s['calls']:.0f} | {mhz} | {watts} |")
    print(f"\nlayer - (indexer + attention): {layer_excess(summary):+.2f} ms")
    for part, ratio in vllm_ratios(summary).items():
        print(f"{part}: {ratio:.2f}x vLLM's (medians, same rounds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=131072)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rep-ms", type=float, default=1000.0, help="do_bench's time per part and round")
    parser.add_argument("--int8", action="store_true", help="also the attention and layer with int8 partials")
    parser.add_argument("--vllm-ops", type=Path, help="vLLM's M3 Triton files: also time vLLM's attention and layer")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("layer_rounds needs a CUDA GPU")
    try:
        fns = layer_parts(args.n, args.int8, args.vllm_ops)
    except FileNotFoundError as err:  # --vllm-ops without vLLM's two files: say which, no traceback
        raise SystemExit(f"layer_rounds: {err}") from None
    with CardSampler() as sampler:
        calls, card = time_rounds(fns, args.rounds, args.rep_ms, sampler)
    summary = summarise(calls)
    header = (f"{torch.cuda.get_device_name()} | torch {torch.__version__} | N={args.n // 1024}K, the indexer's "
              f"selections | {args.rounds} rounds x {args.rep_ms:.0f} ms per part")
    print_summary(summary, card, header)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"header": header, "summary": summary, "vllm_ratios": vllm_ratios(summary),
                                         "card": card, "calls": calls}))


if __name__ == "__main__":
    main()
