"""Run INSIDE the vLLM venv (by test_vllm_plugin.py): checks the plugin against the installed vLLM; prints JSON.

Usage: python vllm_checks.py enabled|disabled
"""
from __future__ import annotations

import json
import sys
from typing import Any


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def select_under(facts: Any, indexer_kv_dtype: str = "bf16") -> dict[str, str]:
    """Call vLLM's (hooked) selectors as the M3 layers do, with platform facts forced to `facts` (for the indexer
    with its own cache dtype when `indexer_kv_dtype` is not bf16, as `--attention-config` sets it)."""
    import dataclasses

    from vllm.models.minimax_m3.common import indexer
    from vllm.models.minimax_m3.nvidia import model

    from serving.plugin import install

    saved = install.platform_facts
    install.platform_facts = lambda kv: facts  # type: ignore[assignment]
    try:
        backend, impl = model.select_main_backend_and_impl_cls(topk_blocks=16, kv_cache_dtype="bfloat16", num_kv_heads=4)
        if indexer_kv_dtype != "bf16":
            install.platform_facts = lambda kv: dataclasses.replace(facts, kv_cache_dtype=kv)  # type: ignore[assignment]
        try:
            index_name = _name(indexer.select_indexer_impl_cls(topk_blocks=16, indexer_kv_dtype=indexer_kv_dtype))
        except NotImplementedError as exc:  # vLLM's own selector refusing (fp8 without CUDA here): data for the test
            index_name = f"NotImplementedError: {exc}"
    finally:
        install.platform_facts = saved
    return {"backend": _name(backend), "main": _name(impl), "indexer": index_name}


def enabled() -> dict[str, Any]:
    from importlib.metadata import entry_points

    from vllm.plugins import load_general_plugins

    out: dict[str, Any] = {}
    eps = {e.name: e.value for e in entry_points(group="vllm.general_plugins")}
    out["entry_point"] = eps.get("m3lab_msa")
    load_general_plugins()
    out["m3_imported_after_plugins"] = "vllm.models.minimax_m3" in sys.modules
    import serving.plugin

    serving.plugin.register()  # a second registration must change nothing
    import vllm.models.minimax_m3  # noqa: F401  (triggers the hooks)
    from vllm.models.minimax_m3.common import indexer
    from vllm.models.minimax_m3.nvidia import model

    from serving.plugin import cpu_patches
    from serving.plugin.selection import PlatformFacts

    out["main_hooked"] = bool(getattr(model.select_main_backend_and_impl_cls, "__m3lab__", False))
    out["indexer_hooked"] = bool(getattr(indexer.select_indexer_impl_cls, "__m3lab__", False))
    out["cpu_ops_patched"] = isinstance(model.ops, cpu_patches._OpsWithTorchFusedQKNorm)
    out["cpu_moe_patched"] = bool(getattr(model.FusedMoEFactory, "__m3lab__", False))
    out["cpu_norm_patched"] = model.MiniMAXGemmaRMSNorm.forward is cpu_patches._gemma_norm_forward
    out["torchvision_stand_in"] = bool(getattr(sys.modules.get("torchvision"), "__m3lab_stand_in__", False))
    out["select"] = {
        "cpu": select_under(PlatformFacts("cpu", None, "bfloat16", False)),
        "sm90_bf16": select_under(PlatformFacts("cuda", (9, 0), "bfloat16", True)),
        "sm90_bf16_no_kernels": select_under(PlatformFacts("cuda", (9, 0), "bfloat16", False)),
        "sm90_fp8": select_under(PlatformFacts("cuda", (9, 0), "fp8_e4m3", True)),
        "sm90_fp8_e5m2": select_under(PlatformFacts("cuda", (9, 0), "fp8_e5m2", True)),
        "sm90_bf16_fp8_index": select_under(PlatformFacts("cuda", (9, 0), "bfloat16", True), "fp8"),
        "sm90_fp8_index_no_kernels": select_under(PlatformFacts("cuda", (9, 0), "bfloat16", False), "fp8"),
        "sm100_bf16": select_under(PlatformFacts("cuda", (10, 0), "bfloat16", True)),
        "rocm": select_under(PlatformFacts("rocm", None, "bfloat16", True)),
    }
    out["version_error"] = _version_error(model)
    return out


def _version_error(model: Any) -> str | None:
    """Pretend the installed vLLM is another series: hooking must fail with a clear message."""
    import vllm

    from serving.plugin import install

    saved = vllm.__version__
    vllm.__version__ = "0.33.0"
    try:
        install.after_model_module(model)
    except Exception as exc:  # noqa: BLE001 -- reported to the test as text
        return f"{type(exc).__name__}: {exc}"
    finally:
        vllm.__version__ = saved
    return None


def disabled() -> dict[str, Any]:
    """VLLM_PLUGINS set without m3lab_msa: vLLM's selectors stay untouched."""
    from vllm.plugins import load_general_plugins

    load_general_plugins()
    from vllm.models.minimax_m3.common import indexer
    from vllm.models.minimax_m3.nvidia import model

    return {
        "main_hooked": bool(getattr(model.select_main_backend_and_impl_cls, "__m3lab__", False)),
        "indexer_hooked": bool(getattr(indexer.select_indexer_impl_cls, "__m3lab__", False)),
    }


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "disabled":
        # Without the plugin the CPU build cannot even import M3's processor (torchvision): report that as data.
        try:
            result: dict[str, Any] = disabled()
        except ModuleNotFoundError as exc:
            result = {"import_error": str(exc)}
    else:
        result = enabled()
    print("M3LAB_JSON " + json.dumps(result))
