"""Comparing a candidate's outputs (as received, data only) with the evaluator's reference."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


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
