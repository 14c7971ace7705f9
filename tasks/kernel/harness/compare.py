"""Comparing a candidate's outputs (as received, data only) with the evaluator's reference."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

DIGEST_SIGMAS = 8.0
"""Allowed checksum error, in standard deviations of the largest error a correct output can produce (see
check_digests): a correct output is rejected with probability below 1e-14."""


@dataclass
class Comparison:
    ok: bool
    problems: list[str] = field(default_factory=list)
    max_abs_err: float = 0.0
    rel_l2_err: float = 0.0


def _describe_ref(t: torch.Tensor) -> dict[str, Any]:
    return {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape), "stride": list(t.stride())}


def compare_one(out: torch.Tensor, info: dict[str, Any], ref: torch.Tensor, atol: float, rtol: float,
                device: str) -> Comparison:
    """`info` is what the worker reported about the object the model returned (type, dtype, stride, device)."""
    want = _describe_ref(ref)
    problems = []
    if info.get("type") != "torch.Tensor":
        problems.append(f"output is a {info.get('type')!s}, not a plain torch.Tensor")
    if info.get("device_type") != device:
        problems.append(f"output is on {info.get('device_type')}, expected {device}")
    for key in ("dtype", "shape", "stride"):
        if info.get(key) != want[key]:
            problems.append(f"output {key} {info.get(key)} != reference {want[key]}")
    if problems or list(out.shape) != want["shape"]:
        return Comparison(False, problems or ["output shape mismatch"])
    # Compared where the reference lives (the GPU for cuda targets: 16M-element checks take ms, not seconds).
    r = ref.detach().to(torch.float64)
    o = out.to(r.device, torch.float64)
    finite_ref = torch.isfinite(r)
    if not torch.isfinite(o)[finite_ref].all():
        problems.append("output has NaN/Inf where the reference is finite")
    diff = (o - r).abs()
    diff = torch.where(finite_ref, diff, torch.zeros_like(diff))
    max_abs = float(diff.max()) if diff.numel() else 0.0
    rel_l2 = float(diff.norm() / r[finite_ref].norm().clamp_min(1e-30)) if diff.numel() else 0.0
    bad = diff > atol + rtol * r.abs()
    bad |= ~torch.isfinite(o) & finite_ref
    if bool(bad.any()):
        problems.append(f"{int(bad.sum())} of {bad.numel()} elements outside atol={atol:g} rtol={rtol:g} "
                        f"(max abs err {max_abs:.3g}, rel L2 {rel_l2:.3g})")
    return Comparison(not problems, problems, max_abs, rel_l2)


def inputs_unchanged(before: Sequence[torch.Tensor], after: Sequence[torch.Tensor]) -> list[str]:
    problems = []
    if len(before) != len(after):
        return [f"worker returned {len(after)} inputs, expected {len(before)}"]
    for i, (b, a) in enumerate(zip(before, after, strict=True)):
        b = b.detach().to("cpu")
        same = b.dtype == a.dtype and b.shape == a.shape and torch.equal(
            b.reshape(-1).view(torch.uint8), a.reshape(-1).view(torch.uint8))
        if not same:
            problems.append(f"input {i} was modified by the candidate")
    return problems


def inputs_kept(values: Sequence[torch.Tensor], probes: Sequence[torch.Tensor],
                inputs: Sequence[torch.Tensor]) -> list[str]:
    """The inputs as a timed call left them, at secret positions, are bit for bit the ones generated."""
    if len(values) != len(inputs):
        return [f"timed call returned {len(values)} input probe sets, expected {len(inputs)}"]
    problems = []
    for i, (v, idx, x) in enumerate(zip(values, probes, inputs, strict=False)):
        want = x.detach().reshape(-1)[idx.to(x.device)].to("cpu")
        if v.dtype != want.dtype or v.shape != want.shape or not torch.equal(v.view(torch.uint8), want.view(torch.uint8)):
            problems.append(f"input {i} was modified by the candidate in a timed call")
    return problems


def check_probes(values: Sequence[torch.Tensor], probes: Sequence[torch.Tensor], refs: Sequence[torch.Tensor],
                 tols: Sequence[tuple[float, float]]) -> list[str]:
    """Values sampled at secret positions right after a timed call must match the reference there."""
    if len(values) != len(refs):
        return [f"timed call returned {len(values)} probe sets, expected {len(refs)}"]
    problems = []
    for i, (v, idx, ref, (atol, rtol)) in enumerate(zip(values, probes, refs, tols, strict=False)):
        r = ref.detach().reshape(-1)[idx.to(ref.device)].to("cpu", torch.float64)
        if v.shape != r.shape:
            problems.append(f"output {i}: probe shape mismatch in a timed call")
            continue
        v64 = v.to(torch.float64)
        bad = ~((v64 - r).abs() <= atol + rtol * r.abs())
        if bool(bad.any()):
            problems.append(f"output {i}: {int(bad.sum())}/{bad.numel()} sampled values wrong in a timed call")
    return problems


def digest_weights(seed: int, numel: int, device: str | torch.device) -> torch.Tensor:
    """The standard-normal weights of one output's whole-output checksum in the timed calls of one shape: the same
    in every process (the evaluator and each worker) from the same seed on the same kind of device. Each call
    rotates them by a fresh secret shift (`output_digest`), given only in that call's untimed staging step."""
    gen = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(numel, generator=gen, device=device, dtype=torch.float64)


def output_digest(out: torch.Tensor, weights: torch.Tensor, shift: int) -> torch.Tensor:
    """Two checksums of a whole output, with the weights rotated by `shift` (w'_i = weights[(i + shift) % n], no
    copy): sum(w' * out) and sum(w' * out^2), in float64, as a 2-element CPU tensor. The squared one cannot be
    assembled from work done once per shape (a linear op's checksum could: sum(w' * xA) = sum(x * w'A))."""
    flat = out.detach().reshape(-1).to(weights.device, torch.float64)
    n = flat.numel()
    if n != weights.numel():
        return torch.full((2,), math.nan, dtype=torch.float64)
    s = shift % n if n else 0
    sums = []
    for values in (flat, flat * flat):
        sums.append(torch.dot(values[:n - s], weights[s:]) + torch.dot(values[n - s:], weights[:s]))
    return torch.stack(sums).to("cpu")


def check_digests(digests: Sequence[torch.Tensor], refs: Sequence[torch.Tensor], weights: Sequence[torch.Tensor],
                  shifts: Sequence[int], tols: Sequence[tuple[float, float]]) -> list[str]:
    """Each timed call's whole output, checked through its two checksums (`output_digest`). An output within
    tolerance everywhere (|e_i| <= tol_i = atol + rtol |ref_i|) whose errors do not depend on the weights gives a
    checksum error sum(w_i d_i) ~ N(0, sum d_i^2), with |d_i| <= tol_i (linear) or 2 |ref_i| tol_i + tol_i^2
    (squared), so DIGEST_SIGMAS standard deviations of that bound it; an output that was not computed (only where
    probes would look, or not at all) misses by about the norm of the skipped part. Skipped where the reference is
    not finite."""
    if len(digests) != len(refs):
        return [f"timed call returned {len(digests)} checksums, expected {len(refs)}"]
    problems = []
    for i, (d, ref, w, shift, (atol, rtol)) in enumerate(zip(digests, refs, weights, shifts, tols, strict=False)):
        r = ref.detach().reshape(-1).to(w.device, torch.float64)
        if not bool(torch.isfinite(r).all()):
            continue
        want = output_digest(r, w, shift)
        tol = atol + rtol * r.abs()
        bounds = [(tol, r.abs()), (2 * r.abs() * tol + tol * tol, r.square())]
        got = d.reshape(-1).to(torch.float64) if d.numel() == 2 else torch.full((2,), math.nan, dtype=torch.float64)
        for k, (dev, size) in enumerate(bounds):
            allowed = DIGEST_SIGMAS * float(dev.square().sum().sqrt()) + 1e-12 * float((w.abs() * size).sum())
            off = abs(float(got[k]) - float(want[k]))
            if not off <= allowed:
                problems.append(f"output {i}: a whole-output checksum is off by {off:.3g} (a correct output is within "
                                f"{allowed:.3g}) in a timed call: it was not all computed in the call")
                break
    return problems
