"""Timing in the evaluator, with its own clock: reference, reference again (A/A) and candidate alternate in a
random order on the same fresh inputs; each timed window is one `go` round trip (run + whole-device sync + probe
gather), so a candidate that patches timers in its own process changes nothing. Values at secret positions are
checked after every timed call (catches side streams, threads, warm-up vs timed behaviour and replayed results)."""
from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .compare import check_probes
from .procs import WorkerHandle
from .protocol import Message, encode

PROBES_PER_OUTPUT = 64
TIME_QUANTILE = 0.25
"""Statistic of the timed calls: a low quantile, because interference (preemption on a shared CPU, another process
on the GPU) only ever adds time; on a quiet GPU it equals the median within noise."""


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

# Deliberately generous peaks (about 2x the best datasheet number of each chip, any dtype, sparsity included):
# the floor max(FLOPs/peak, bytes/bandwidth) must never reject an honest kernel, only impossible times.
_GPU_PEAKS = {"H200": (4000e12, 10e12), "H100": (4000e12, 7e12), "A100": (1250e12, 4e12)}
_DEFAULT_GPU_PEAK = (5000e12, 16e12)
_CPU_PEAK_PER_CORE = (1.0e12, 2.0e11)


@dataclass
class TimingResult:
    ref_ms: float
    cand_ms: float
    aa_ratio: float
    samples: int
    problems: list[str] = field(default_factory=list)
    background_cpu_s: float = 0.0
    ref_window_s: float = 0.0
    speedup: float = 0.0
    """Reference time / candidate time, both the TIME_QUANTILE of their timed calls (the reference pools A and B)."""
    stage_excess_ms: float = 0.0
    """Extra time the candidate spent in the untimed staging step beyond the reference's (charged to it)."""


def roofline_floor_ms(flops: float | None, nbytes: float, device: str, device_name: str, threads: int) -> float:
    if device == "cuda":
        peak_flops, peak_bw = next((v for k, v in _GPU_PEAKS.items() if k in device_name), _DEFAULT_GPU_PEAK)
    else:
        peak_flops, peak_bw = (_CPU_PEAK_PER_CORE[0] * threads, _CPU_PEAK_PER_CORE[1] * threads)
    return max((flops or 0.0) / peak_flops, nbytes / peak_bw) * 1e3


def _timed_go(worker: WorkerHandle, probes: list[torch.Tensor], timeout_s: float) -> tuple[float, Message]:
    frame = encode(Message({"cmd": "go"}, probes))
    # The clock starts BEFORE the request leaves: started after it, a preempted evaluator would miss the call.
    t0 = time.perf_counter_ns()
    reply = worker.request_raw(frame, timeout_s, "go")
    t1 = time.perf_counter_ns()
    return (t1 - t0) / 1e6, reply


def time_shape(
    workers: dict[str, WorkerHandle],
    shape: dict,
    next_case: Callable[[], tuple[int, list[torch.Tensor]]],
    tols: list[tuple[float, float]],
    rng: random.Random,
    warmup: int,
    iters: int,
    timeout_s: float,
) -> TimingResult:
    """`workers` has keys ref_a, ref_b, cand; `next_case()` returns a fresh input seed and the reference outputs
    for the inputs that seed generates (each worker generates them itself in the untimed staging step)."""
    samples: dict[str, list[float]] = {k: [] for k in workers}
    stages: dict[str, list[float]] = {k: [] for k in workers}
    problems: list[str] = []
    background, ref_window = 0.0, 0.0
    cand = workers["cand"]
    for it in range(warmup + iters):
        seed, refs = next_case()
        gen = torch.Generator().manual_seed(rng.getrandbits(62))
        probes = [torch.randint(0, max(r.numel(), 1), (min(PROBES_PER_OUTPUT, r.numel()),), generator=gen)
                  for r in refs]
        order = list(workers)
        rng.shuffle(order)
        staged = encode(Message({"cmd": "stage", "seed": seed, "shape": shape}))  # same frame to all three
        for name in order:
            w = workers[name]
            t0 = time.perf_counter_ns()
            w.request_raw(staged, timeout_s, "stage")
            stage_ms = (time.perf_counter_ns() - t0) / 1e6
            cpu_before = cand.cpu_seconds() if name != "cand" else 0.0
            ms, reply = _timed_go(w, probes, timeout_s)
            if name != "cand":
                background += cand.cpu_seconds() - cpu_before
                ref_window += ms / 1e3
            bad = check_probes(reply.tensors, probes, refs, tols)
            if bad:
                who = "candidate" if name == "cand" else "reference (harness fault)"
                problems.extend(f"{who}, timed call {it}: {b}" for b in bad)
                return TimingResult(0, 0, 0, it, problems)
            if it >= warmup:  # warm-up calls look exactly like timed ones to the worker
                samples[name].append(ms)
                stages[name].append(stage_ms)
    # Work moved from `go` into `stage` (by a candidate that patched its worker) is charged back to the candidate;
    # the reference-vs-reference spread of the staging times is the noise allowance.
    st = list(zip(stages["ref_a"], stages["ref_b"], stages["cand"], strict=False))
    extra = statistics.median(c - (a + b) / 2 for a, b, c in st)
    noise = statistics.median(abs(b - a) for a, b, _ in st)
    excess = max(0.0, extra - 3 * noise)
    q = {k: quantile(v, TIME_QUANTILE) for k, v in samples.items()}
    ref_ms = quantile(samples["ref_a"] + samples["ref_b"], TIME_QUANTILE)
    speedup = ref_ms / (q["cand"] + excess)
    aa = q["ref_b"] / q["ref_a"]
    return TimingResult(ref_ms, q["cand"] + excess, aa, iters, problems, background, ref_window, speedup, excess)
