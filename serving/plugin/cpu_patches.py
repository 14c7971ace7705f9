"""CPU-build patches to vLLM's M3 model module: Gemma RMSNorm, the fused q/k-norm op, and MoE experts/routing.

Applied by `install.after_model_module` only when vLLM's current platform is the CPU. Each patch is scoped to the
M3 model module (its own names), never to vLLM globals, so other models in the process are untouched.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any

import torch

from serving.plugin import cpu_ops


class _OpsWithTorchFusedQKNorm:
    """Stands in for `vllm._custom_ops` inside the M3 model module: our torch fused q/k-norm op, the rest delegated."""

    def __init__(self, ops: ModuleType) -> None:
        self._ops = ops
        self.fused_minimax_m3_qknorm_rope_kv_insert = cpu_ops.fused_qknorm_rope_kv_insert

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ops, name)


def _gemma_norm_forward(self: Any, x: torch.Tensor, residual: torch.Tensor | None = None) -> Any:
    if residual is None:
        return cpu_ops.gemma_rms_norm(x, self.weight, self.variance_epsilon)
    return cpu_ops.gemma_fused_add_rms_norm(x, residual, self.weight, self.variance_epsilon)


class MoEConfigUnsupported(ValueError):
    """The M3 MoE block uses constants the CPU experts cannot reproduce exactly."""


def _cpu_moe_factory(factory: Any) -> Any:
    """Wrap FusedMoEFactory: `swigluoai_uninterleave` -> CPU `swigluoai` (+ w13 interleave), sigmoid routing via
    grouped top-k with one group (the CPU router's only sigmoid + bias path; identical selection with one group)."""

    def make(*args: Any, **kwargs: Any) -> Any:
        interleave = kwargs.get("activation") == "swigluoai_uninterleave"
        if interleave:
            wrong = {k: kwargs.get(k) for k, v in _CPU_CONSTANTS.items() if kwargs.get(k) is not None and float(kwargs[k]) != v}
            if wrong:
                raise MoEConfigUnsupported(
                    f"CPU swigluoai hard-wires {_CPU_CONSTANTS}; this M3 config has {wrong}: cannot serve it on CPU"
                )
            kwargs["activation"] = "swigluoai"
        if kwargs.get("scoring_func") == "sigmoid" and not kwargs.get("use_grouped_topk"):
            kwargs.update(use_grouped_topk=True, num_expert_group=1, topk_group=1)
        runner = factory(*args, **kwargs)
        if interleave:
            _interleave_after_loading(runner)
        return runner

    make.__m3lab__ = True  # type: ignore[attr-defined]
    return make


_CPU_CONSTANTS = {"swiglu_alpha": 1.702, "swiglu_beta": 1.0, "swiglu_limit": 7.0}


def _interleave_after_loading(runner: torch.nn.Module) -> None:
    """Reorder each expert module's w13 to interleaved rows just before its quant method prepacks it."""
    for module in runner.modules():
        method = getattr(module, "quant_method", None)
        if method is None or not hasattr(module, "w13_weight"):
            continue
        original = method.process_weights_after_loading

        def process(layer: torch.nn.Module, _original: Any = original) -> None:
            if not getattr(layer, "_m3lab_w13_interleaved", False):
                w13 = layer.get_parameter("w13_weight")
                w13.data = cpu_ops.interleave_w13(w13.data)
                layer._m3lab_w13_interleaved = True  # type: ignore[assignment]  # a plain flag; torch types tensors
            _original(layer)

        method.process_weights_after_loading = process


def patch_model_module(module: ModuleType) -> None:
    """Apply the CPU patches to vLLM's `vllm.models.minimax_m3.nvidia.model` (idempotent)."""
    if not isinstance(module.ops, _OpsWithTorchFusedQKNorm):
        # Patching vLLM's module is the point; ModuleType declares no attributes to assign.
        module.ops = _OpsWithTorchFusedQKNorm(module.ops)  # type: ignore[attr-defined]
    module.MiniMAXGemmaRMSNorm.forward = _gemma_norm_forward
    if not getattr(module.FusedMoEFactory, "__m3lab__", False):
        module.FusedMoEFactory = _cpu_moe_factory(module.FusedMoEFactory)  # type: ignore[attr-defined]
