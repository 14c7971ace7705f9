"""What the plugin does to vLLM's MiniMax M3 modules once they load (called from the import hooks only).

Hook points (vLLM 0.32, `vllm/models/minimax_m3/`):
- `nvidia.model.select_main_backend_and_impl_cls`: imported by name into the model module at load time, so it is
  replaced there (the sparse layer calls it in __init__).
- `common.indexer.select_indexer_impl_cls`: looked up at call time inside `MiniMaxM3Indexer.__init__`.
- CPU build only: `nvidia.model.MiniMAXGemmaRMSNorm.forward` (imports FlashInfer), `nvidia.model.ops` (the fused
  q/k-norm op is CUDA-only), `nvidia.model.FusedMoEFactory` (activation + routing the CPU experts accept), and a
  torchvision stand-in before `vllm.transformers_utils.processors.minimax_m3` runs.
Every replacement records what it chose in `CHOICES` (layer kind -> implementation name) so tests can inspect it.
"""
from __future__ import annotations

import enum
import importlib.util
import sys
import types
from types import ModuleType
from typing import Any

from serving.plugin.selection import Implementation, PlatformFacts, Selection, check_vllm_version, select_implementation

CHOICES: dict[str, str] = {}
"""Last implementation chosen per hook ("main", "indexer") as "impl-class-qualname"; for tests and logs."""



def _vllm_version() -> str:
    import vllm

    return str(getattr(vllm, "__version__", "unknown"))


def _require(module: ModuleType, *names: str) -> None:
    missing = [n for n in names if not hasattr(module, n)]
    if missing:
        raise RuntimeError(
            f"m3lab MSA plugin: {module.__name__} has no {', '.join(missing)} in vLLM {_vllm_version()}; "
            "the MiniMax M3 hook points moved. Disable the plugin (VLLM_PLUGINS without 'm3lab_msa')."
        )


def platform_facts(kv_cache_dtype: str) -> PlatformFacts:
    """Facts about this process from vLLM's current platform; "auto" resolved through the model dtype."""
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        device = "cpu"
    elif current_platform.is_rocm():
        device = "rocm"
    elif current_platform.is_cuda():
        device = "cuda"
    else:
        device = str(getattr(current_platform, "device_type", "unknown"))
    capability = None
    if device == "cuda":
        cap = current_platform.get_device_capability()
        capability = (cap.major, cap.minor) if cap is not None else None
    return PlatformFacts(device, capability, _resolve_kv_dtype(kv_cache_dtype), m3lab_triton_available())


def _resolve_kv_dtype(kv_cache_dtype: str) -> str:
    if kv_cache_dtype != "auto":
        return kv_cache_dtype
    from vllm.config import get_current_vllm_config

    dtype = get_current_vllm_config().model_config.dtype
    return str(dtype).removeprefix("torch.")


def m3lab_triton_available() -> bool:
    """kernels/msa ships the Triton entry points `triton_impls` calls (cheap: no Triton import)."""
    from serving.plugin import triton_api

    return triton_api.available()


# --- hook callbacks -------------------------------------------------------------------------------------------


def before_processor_module(_module: ModuleType) -> None:
    """Give the M3 processor module the one torchvision name it imports when torchvision is absent (CPU build)."""
    if importlib.util.find_spec("torchvision") is not None:
        return
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return  # on GPU a missing torchvision is a real installation problem: let the import fail loudly
    install_torchvision_stand_in()


def install_torchvision_stand_in() -> None:
    """A `torchvision.transforms` holding only `InterpolationMode` (the M3 processor's single use of torchvision)."""

    class InterpolationMode(enum.Enum):  # torchvision's values; PIL-free
        NEAREST = "nearest"
        NEAREST_EXACT = "nearest-exact"
        BILINEAR = "bilinear"
        BICUBIC = "bicubic"
        BOX = "box"
        HAMMING = "hamming"
        LANCZOS = "lanczos"

    root = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    transforms.InterpolationMode = InterpolationMode  # type: ignore[attr-defined]
    root.transforms = transforms  # type: ignore[attr-defined]
    root.__m3lab_stand_in__ = True  # type: ignore[attr-defined]
    sys.modules.setdefault("torchvision", root)
    sys.modules.setdefault("torchvision.transforms", transforms)


def needs_hooks() -> bool:
    """Whether this process can ever pick one of our impls (CPU build, or a Hopper GPU); else stay out entirely."""
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        return True
    if current_platform.is_cuda() and not current_platform.is_rocm():
        cap = current_platform.get_device_capability()
        return cap is not None and cap.major == 9
    return False


def after_indexer_module(module: ModuleType) -> None:
    if not needs_hooks():
        return
    check_vllm_version(_vllm_version())
    _require(module, "select_indexer_impl_cls", "MiniMaxM3IndexerImpl", "MiniMaxM3IndexerTritonImpl")
    if getattr(module.select_indexer_impl_cls, "__m3lab__", False):
        return
    original = module.select_indexer_impl_cls

    def select_indexer_impl_cls(*, topk_blocks: int, indexer_kv_dtype: Any = "bf16") -> type:
        kv = "bfloat16" if indexer_kv_dtype == "bf16" else str(indexer_kv_dtype)
        selection = select_implementation(platform_facts(kv), "indexer")
        cls = _impl_cls(selection, "indexer") or original(topk_blocks=topk_blocks, indexer_kv_dtype=indexer_kv_dtype)
        _record("indexer", cls, selection)
        return cls

    select_indexer_impl_cls.__m3lab__ = True  # type: ignore[attr-defined]
    select_indexer_impl_cls.__wrapped__ = original  # type: ignore[attr-defined]
    # Patching vLLM's module is the point; ModuleType declares no attributes to assign.
    module.select_indexer_impl_cls = select_indexer_impl_cls  # type: ignore[attr-defined]


def after_model_module(module: ModuleType) -> None:
    if not needs_hooks():
        return
    check_vllm_version(_vllm_version())
    _require(module, "select_main_backend_and_impl_cls", "MiniMAXGemmaRMSNorm", "ops", "FusedMoEFactory")
    if getattr(module.select_main_backend_and_impl_cls, "__m3lab__", False):
        return
    original = module.select_main_backend_and_impl_cls

    def select_main_backend_and_impl_cls(*, topk_blocks: int, kv_cache_dtype: str, num_kv_heads: int, **kw: Any):
        selection = select_implementation(platform_facts(kv_cache_dtype))
        backend, impl = original(topk_blocks=topk_blocks, kv_cache_dtype=kv_cache_dtype, num_kv_heads=num_kv_heads, **kw)
        ours = _impl_cls(selection, "main")
        if ours is not None:
            impl = ours  # backend stays vLLM's MiniMaxM3SparseBackend: same cache layout and metadata builder
        else:
            _refuse_options_for_vllm_impl(selection)
        _record("main", impl, selection)
        return backend, impl

    select_main_backend_and_impl_cls.__m3lab__ = True  # type: ignore[attr-defined]
    select_main_backend_and_impl_cls.__wrapped__ = original  # type: ignore[attr-defined]
    module.select_main_backend_and_impl_cls = select_main_backend_and_impl_cls  # type: ignore[attr-defined]
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        from serving.plugin import cpu_patches

        cpu_patches.patch_model_module(module)


_IMPL_CLASSES = {
    Implementation.M3LAB_TORCH_CPU: {"indexer": "TorchMSAIndexerImpl", "main": "TorchMSASparseImpl"},
    Implementation.M3LAB_TRITON: {"indexer": "TritonMSAIndexerImpl", "main": "TritonMSASparseImpl"},
}
"""Our impl class (in serving/plugin/impls.py) per implementation and layer kind; vLLM's own: none."""


def _impl_cls(selection: Selection, layer: str) -> type | None:
    """Our impl class for a layer kind ("indexer" or "main"), or None to keep vLLM's."""
    names = _IMPL_CLASSES.get(selection.implementation)
    if names is None:
        return None
    from serving.plugin import impls  # imports torch and our kernels: only once a layer needs them

    return getattr(impls, names[layer])



def _refuse_options_for_vllm_impl(selection: Selection) -> None:
    """Our engine options change our kernels only: asked for where vLLM's own impl serves, they would be ignored
    in silence, so they are refused (one line) at model load instead."""
    from vllm.config import get_current_vllm_config_or_none

    from serving.plugin.options import CONFIG_KEY, PluginOptions, plugin_options

    config = get_current_vllm_config_or_none()
    options = plugin_options(config.additional_config if config else None)
    if options != PluginOptions():
        raise ValueError(f"m3lab MSA plugin: additional_config {options.as_config()} applies to the m3lab kernels, "
                         f"but vLLM's own MSA impl serves here ({selection.reason}); drop {CONFIG_KEY!r}")


def _record(kind: str, cls: type, selection: Selection) -> None:
    name = f"{cls.__module__}.{cls.__qualname__}"
    if CHOICES.get(kind) != name:
        from vllm.logger import init_logger  # vLLM's handlers: the line lands in the server log

        init_logger("vllm.plugins.m3lab_msa").info("m3lab MSA plugin: %s impl %s (%s)", kind, name, selection.reason)
    CHOICES[kind] = name
