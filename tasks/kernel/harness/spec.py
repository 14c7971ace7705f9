"""Loading a KernelBench-format target in the evaluator (trusted code: the target, never the candidate).

A target file defines `class Model(nn.Module)`, `get_inputs()`, `get_init_inputs()` and may add:
- `M3LAB_META = {...}`: "shapes" (list of module-global overrides; correctness runs on each), "timing_shapes"
  (defaults to the first shape), "timing_shapes_cuda" (bigger ones for GPUs, where the default ones would be too
  small to time), "random_shape" ({global: [lo, hi]}, one hidden shape drawn per evaluation from the
  secret seed), "tolerances" ({dtype: [atol, rtol]}), "forbidden_ops" (names a candidate must not call, matched
  statically and against the aten ops it dispatches), "devices" (where the target runs), "trials" (per shape).
- `get_flops()`: FLOPs of one forward at the current globals (for the roofline); bytes are computed from tensors.
"""
from __future__ import annotations

import ast
import importlib.util
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-7, 1e-7),
    "float32": (1e-4, 1e-4),
    "float16": (1e-2, 1e-2),
    "bfloat16": (2e-2, 2e-2),
}


class TargetError(ValueError):
    """The target file does not follow the KernelBench format or its metadata is malformed."""


@dataclass(frozen=True)
class TargetMeta:
    shapes: list[dict[str, Any]]
    timing_shapes: list[dict[str, Any]]
    timing_shapes_cuda: list[dict[str, Any]]
    random_shape: dict[str, tuple[int, int]]
    tolerances: dict[str, tuple[float, float]]
    forbidden_ops: list[str]
    devices: list[str]
    trials: int


@dataclass
class Target:
    path: Path
    module: ModuleType
    meta: TargetMeta
    defaults: dict[str, Any] = field(default_factory=dict)


def read_meta_static(path: Path) -> dict[str, Any]:
    """M3LAB_META as a literal, read without importing (used by the host and the CLI)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "M3LAB_META" for t in node.targets):
            try:
                return dict(ast.literal_eval(node.value))
            except ValueError as exc:
                raise TargetError(f"{path}: M3LAB_META must be a literal dict ({exc})") from None
    return {}


def _parse_meta(raw: dict[str, Any]) -> TargetMeta:
    shapes = list(raw.get("shapes") or [{}])
    tolerances = dict(DEFAULT_TOLERANCES)
    for name, pair in (raw.get("tolerances") or {}).items():
        tolerances[name] = (float(pair[0]), float(pair[1]))
    return TargetMeta(
        shapes=shapes,
        timing_shapes=list(raw.get("timing_shapes") or shapes[:1]),
        timing_shapes_cuda=list(raw.get("timing_shapes_cuda") or raw.get("timing_shapes") or shapes[:1]),
        random_shape={k: (int(v[0]), int(v[1])) for k, v in (raw.get("random_shape") or {}).items()},
        tolerances=tolerances,
        forbidden_ops=[str(x) for x in raw.get("forbidden_ops", [])],
        devices=[str(x) for x in raw.get("devices", ["cpu", "cuda"])],
        trials=int(raw.get("trials", 3)),
    )


def seal_import_path(folder: Path) -> None:
    """Take `folder` (the evaluation folder, writable by candidate code) and everything under it off sys.path, once
    a trusted process (the evaluator, a reference worker) has imported all it needs: a module the candidate plants
    there can then never shadow one that process imports later."""
    root = Path(folder).resolve()

    def inside(entry: str) -> bool:
        where = Path(entry or ".").resolve()
        return where == root or root in where.parents

    sys.path[:] = [entry for entry in sys.path if not inside(entry)]
    sys.path_importer_cache.clear()


def load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TargetError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_target(path: Path) -> Target:
    module = load_module(path, "m3lab_target")
    missing = [n for n in ("Model", "get_inputs", "get_init_inputs") if not hasattr(module, n)]
    if missing:
        raise TargetError(f"{path}: missing {', '.join(missing)} (KernelBench format)")
    meta = _parse_meta(read_meta_static(path))
    keys = {k for s in meta.shapes + meta.timing_shapes + meta.timing_shapes_cuda for k in s} | set(meta.random_shape)
    defaults = {k: getattr(module, k) for k in keys if hasattr(module, k)}
    unknown = keys - set(defaults)
    if unknown:
        raise TargetError(f"{path}: shape keys {sorted(unknown)} are not module globals")
    return Target(path=path, module=module, meta=meta, defaults=defaults)


def random_shape(target: Target, rng: random.Random) -> dict[str, Any] | None:
    if not target.meta.random_shape:
        return None
    return {k: rng.randint(lo, hi) for k, (lo, hi) in target.meta.random_shape.items()}


def set_shape(target: Target, shape: dict[str, Any]) -> None:
    """KernelBench get_inputs() reads module globals at call time: a shape is a set of global overrides."""
    for key, value in {**target.defaults, **shape}.items():
        setattr(target.module, key, value)


def init_args(target: Target) -> list[Any]:
    args = list(target.module.get_init_inputs())
    for a in args:
        if not isinstance(a, (int, float, bool, str)) and a is not None:
            raise TargetError(f"get_init_inputs() must return plain numbers/strings, got {type(a).__name__}")
    return args


def resolved_shape(target: Target, shape: dict[str, Any]) -> dict[str, Any]:
    return {**target.defaults, **shape}


def generate_inputs(module: ModuleType, seed: int, device: str) -> list[torch.Tensor]:
    """get_inputs() with the factories defaulting to `device` (fast on GPUs) under `seed`: the same seed gives the
    same tensors in any process on the same kind of device."""
    torch.manual_seed(seed)
    with torch.device(device):
        inputs = list(module.get_inputs())
    if not all(isinstance(x, torch.Tensor) for x in inputs):
        raise TargetError("get_inputs() must return tensors only")
    return [x.to(device) for x in inputs]


def make_inputs(target: Target, seed: int, device: str) -> list[torch.Tensor]:
    return generate_inputs(target.module, seed, device)


def build_reference(target: Target, args: list[Any], seed: int, device: str) -> torch.nn.Module:
    torch.manual_seed(seed)
    return target.module.Model(*args).to(device).eval()


def timing_shapes(target: Target, device: str) -> list[dict[str, Any]]:
    return target.meta.timing_shapes_cuda if device == "cuda" else target.meta.timing_shapes


def flops(target: Target) -> float | None:
    fn = getattr(target.module, "get_flops", None)
    return float(fn()) if callable(fn) else None


def tolerance(target: Target, dtype: torch.dtype) -> tuple[float, float]:
    name = str(dtype).removeprefix("torch.")
    return target.meta.tolerances.get(name, (1e-2, 1e-2))
