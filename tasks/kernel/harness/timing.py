"""Timing in the evaluator, with its own clock: reference, reference again (A/A) and candidate alternate in a
random order on the same fresh inputs; each timed window is one `go` round trip (run + whole-device sync), so a
candidate that patches timers in its own process changes nothing. The timed call learns nothing about what will be
checked: right after it, an untimed `check` asks for values at secret positions and a checksum of each whole output
(catches side streams, threads, warm-up vs timed behaviour, replayed results and outputs computed only where they
are checked). Work a candidate moves into the untimed steps (staging, check) is charged back to it.

Outside its own turn (stage, go, check) the candidate's process group is stopped (SIGSTOP): nothing of the
candidate's runs beside a reference call; before each reference's turn the references are inspected (running, on
their CPUs, at their priority) and the candidate may have no other process running. A candidate's CPU time over its own steps may not exceed their wall time times the cores it is given.
A secret few extra calls of the candidate are traced (the aten ops it dispatches) and not timed."""
from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .compare import check_digests, check_probes, digest_weights, inputs_kept
from .procs import WorkerHandle
from .protocol import Message, encode

PROBES_PER_OUTPUT = 64
TRACED_CALLS = 3
"""Extra candidate calls per timing shape, at secret positions among the timed ones, run under the aten-op trace
(forbidden library ops) and left out of the statistics."""
CPU_SLACK = 1.05
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
    """Extra time the candidate spent in the untimed steps (staging, check) beyond the reference's (charged to it)."""
    cheats: list[str] = field(default_factory=list)
    """Tampering seen while timing: references stopped or moved, forbidden ops in a traced call, stray processes."""
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU time of the candidate's process over its timed calls (go) and over its whole turns (stage, go, check),
    with their wall times (go_wall, turn_wall)."""


def roofline_floor_ms(flops: float | None, nbytes: float, device: str, device_name: str, threads: int) -> float:
    if device == "cuda":
        peak_flops, peak_bw = next((v for k, v in _GPU_PEAKS.items() if k in device_name), _DEFAULT_GPU_PEAK)
    else:
        peak_flops, peak_bw = (_CPU_PEAK_PER_CORE[0] * threads, _CPU_PEAK_PER_CORE[1] * threads)
    return max((flops or 0.0) / peak_flops, nbytes / peak_bw) * 1e3


def _timed_go(worker: WorkerHandle, frame: bytes, timeout_s: float) -> tuple[float, Message]:
    # The clock starts BEFORE the request leaves: started after it, a preempted evaluator would miss the call.
    t0 = time.perf_counter_ns()
    reply = worker.request_raw(frame, timeout_s, "go")
    t1 = time.perf_counter_ns()
    return (t1 - t0) / 1e6, reply


def _untimed(worker: WorkerHandle, frame: bytes, timeout_s: float, what: str) -> tuple[float, Message]:
    t0 = time.perf_counter_ns()
    reply = worker.request_raw(frame, timeout_s, what)
    return (time.perf_counter_ns() - t0) / 1e6, reply


def time_shape(
    workers: dict[str, WorkerHandle],
    shape: dict,
    next_case: Callable[[], tuple[int, list[torch.Tensor], list[torch.Tensor]]],
    tols: list[tuple[float, float]],
    rng: random.Random,
    warmup: int,
    iters: int,
    timeout_s: float,
    forbidden: list[str] | None = None,
    guard: Callable[[], list[str]] | None = None,
    cpus: frozenset[int] | None = None,
) -> TimingResult:
    """`workers` has keys ref_a, ref_b, cand; `next_case()` returns a fresh input seed, the inputs it generates and
    the reference outputs for them (each worker generates the inputs itself in the untimed staging step).
    `guard()` runs while the candidate is stopped, before each reference's turn: what it finds (stray processes of
    the candidate's) ends the timing as a cheat. `forbidden`: library ops the traced candidate calls must not
    dispatch. `cpus`: the CPUs the candidate is pinned to (its threads may not run elsewhere)."""
    samples: dict[str, list[float]] = {k: [] for k in workers}
    untimed: dict[str, dict[str, list[float]]] = {k: {"stage": [], "check": []} for k in workers}
    problems: list[str] = []
    background, ref_window = 0.0, 0.0
    cand = workers["cand"]
    cpu = {"go": 0.0, "go_wall": 0.0, "turn": 0.0, "turn_wall": 0.0}
    total = warmup + iters + TRACED_CALLS
    traced = set(rng.sample(range(total), TRACED_CALLS))
    go_plain = encode(Message({"cmd": "go"}))
    go_traced = encode(Message({"cmd": "go", "trace": True}))
    seed, inputs, refs = next_case()
    digest_seed = rng.getrandbits(62)
    weights = [digest_weights(digest_seed + i, r.numel(), r.device) for i, r in enumerate(refs)]
    digest = Message({"cmd": "digest", "seed": digest_seed, "numels": [r.numel() for r in refs]})
    for w in workers.values():
        w.request(digest, timeout_s)
    watch = cand.thread_runs if cpus and len(cpus) == 1 else dict  # where its threads ran (CPU timing)
    timed = 0
    try:
        for it in range(total):
            if it:
                seed, inputs, refs = next_case()
            gen = torch.Generator().manual_seed(rng.getrandbits(62))
            probes = [torch.randint(0, max(t.numel(), 1), (min(PROBES_PER_OUTPUT, t.numel()),), generator=gen)
                      for t in refs + inputs]  # the outputs', then the inputs' (as the call left them)
            shifts = [rng.randrange(max(r.numel(), 1)) for r in refs]
            order = list(workers)
            rng.shuffle(order)
            staged = encode(Message({"cmd": "stage", "seed": seed, "shape": shape, "shifts": shifts}))
            check = encode(Message({"cmd": "check", "outputs": len(refs)}, probes))  # the same frames to all three
            trace = it in traced
            spent: dict[str, tuple[float, float]] = {}
            for name in order:
                w = workers[name]
                if name == "cand":
                    cand.resume_group()
                    runs = [watch()]
                    w0, c0 = time.perf_counter(), cand.cpu_seconds()
                else:
                    cand.stop_group()  # nothing of the candidate's runs beside a reference call
                    found = guard() if guard else []
                    found += [f"reference worker {name} was tampered with while the candidate ran: {t}"
                              for t in w.tampering()]
                    if found:
                        return TimingResult(0, 0, 0, it, [], cheats=found)
                    cpu_before = cand.cpu_seconds()
                st_ms, _ = _untimed(w, staged, timeout_s, "stage")
                if name == "cand":
                    runs.append(watch())
                    g0 = cand.cpu_seconds()
                ms, reply = _timed_go(w, go_traced if trace and name == "cand" else go_plain, timeout_s)
                if name == "cand":
                    g1 = cand.cpu_seconds()
                    runs.append(watch())
                ck_ms, checked = _untimed(w, check, timeout_s, "check")
                if name == "cand":
                    cpu["go"] += g1 - g0
                    cpu["go_wall"] += ms / 1e3
                    cpu["turn"] += cand.cpu_seconds() - c0
                    cpu["turn_wall"] += time.perf_counter() - w0
                    cand.stop_group()  # it runs during its own turn only
                    runs.append(watch())
                    # After each step (a thread's last CPU is only updated when it runs again, so a thread moved
                    # back to the timing core before the reply still shows where it ran).
                    elsewhere = sorted({t for a, b in zip(runs, runs[1:], strict=False)
                                        for t in _ran_elsewhere(a, b, cpus)})
                    if elsewhere:
                        return TimingResult(0, 0, 0, it, [], cheats=[
                            f"candidate {', '.join(elsewhere[:3])} ran off the timing core during its turn (CPU "
                            "affinity widened for the call and put back)"])
                else:
                    background += cand.cpu_seconds() - cpu_before
                    ref_window += ms / 1e3
                n = len(refs)
                values, digests, left = checked.tensors[:n], checked.tensors[n:2 * n], checked.tensors[2 * n:]
                bad = check_probes(values, probes[:n], refs, tols) or check_digests(digests, refs, weights, shifts,
                                                                                     tols)
                bad = bad or inputs_kept(left, probes[n:], inputs)
                if bad:
                    who = "candidate" if name == "cand" else "reference (harness fault)"
                    problems.extend(f"{who}, timed call {timed}: {b}" for b in bad)
                    return TimingResult(0, 0, 0, it, problems)
                if trace and name == "cand":
                    ops = [str(o) for o in reply.header.get("ops", [])]
                    hits = [o for o in ops if any(f.lower() in o.lower() for f in forbidden or [])]
                    if hits:
                        return TimingResult(0, 0, 0, it, [], cheats=[
                            f"dispatched the forbidden library op {hits[0]} in a timed call (the reference op, not a "
                            "new kernel)"])
                spent[name] = (st_ms, ck_ms)
                if not trace and timed >= warmup:  # warm-up calls look exactly like timed ones to the worker
                    samples[name].append(ms)
            if not trace:
                if timed >= warmup:
                    for name, (st_ms, ck_ms) in spent.items():
                        untimed[name]["stage"].append(st_ms)
                        untimed[name]["check"].append(ck_ms)
                timed += 1
    finally:
        cand.resume_group()
    # Work moved from `go` into `stage` or `check` (by a candidate that rewrote its worker) is charged back to the
    # candidate, step by step; the reference-vs-reference spread of each step is its noise allowance.
    excess = sum(_excess(untimed["ref_a"][k], untimed["ref_b"][k], untimed["cand"][k]) for k in ("stage", "check"))
    q = {k: quantile(v, TIME_QUANTILE) for k, v in samples.items()}
    ref_ms = quantile(samples["ref_a"] + samples["ref_b"], TIME_QUANTILE)
    speedup = ref_ms / (q["cand"] + excess)
    aa = q["ref_b"] / q["ref_a"]
    return TimingResult(ref_ms, q["cand"] + excess, aa, iters, problems, background, ref_window, speedup, excess,
                        cpu=cpu)


def _excess(a: list[float], b: list[float], c: list[float]) -> float:
    """How much more the candidate spent in an untimed step than the references (median over calls), beyond three
    times their own spread."""
    st = list(zip(a, b, c, strict=False))
    extra = statistics.median(z - (x + y) / 2 for x, y, z in st)
    noise = statistics.median(abs(y - x) for x, y, _ in st)
    return max(0.0, extra - 3 * noise)


def _ran_elsewhere(before: dict[str, tuple[int, int, int]], after: dict[str, tuple[int, int, int]],
                   cpus: frozenset[int] | None) -> list[str]:
    """Evidence that a candidate thread ran outside `cpus` (the one timing core) between two snapshots: the
    scheduler moved a thread pinned to one CPU, or a thread that ran last ran elsewhere (affinity widened for a
    call and put back before replying)."""
    if not cpus or len(cpus) != 1:
        return []
    found = set()
    for tid, (ran, where, moved) in after.items():
        was = before.get(tid)
        if was is None:  # a thread started in between: placed once at most
            if moved > 1 or (ran and where >= 0 and where not in cpus):
                found.add(f"thread {tid}")
        elif (moved >= 0 and was[2] >= 0 and moved > was[2]) or (ran > was[0] and where >= 0 and where not in cpus):
            found.add(f"thread {tid}")
    return sorted(found)
