"""Which implementation M3's sparse layers get, decided from plain facts (no vLLM import here).

Rules (issue 8): Hopper (SM90) with a bf16 KV cache -> our Triton MSA kernels (kernels/msa), when they are
installed; the CPU build -> our torch paths (vLLM's Triton kernels cannot run there); everything else -> vLLM's
own choice (SM100 MSA, ROCm AITER, Triton elsewhere, fp8 KV caches...). The indexer's side cache has its own dtype
(`indexer_kv_dtype`): our Triton indexer takes a bf16 or an fp8 e4m3 one (issue 16, v13r).
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Literal

SUPPORTED_VLLM_SERIES: tuple[tuple[int, int], ...] = ((0, 32),)
"""vLLM major.minor series whose `vllm/models/minimax_m3/` hook points this plugin was written against."""


class UnsupportedVllmVersion(RuntimeError):
    """The installed vLLM is not a series whose MiniMax M3 hook points this plugin knows."""


class Implementation(enum.StrEnum):
    M3LAB_TRITON = "m3lab-triton"
    """Our Triton kernels from kernels/msa (SM90, bf16 KV cache)."""
    M3LAB_TORCH_CPU = "m3lab-torch-cpu"
    """Our torch paths + the MSA reference (the CPU build of vLLM)."""
    VLLM = "vllm"
    """Leave vLLM's own selection untouched."""


@dataclass(frozen=True)
class PlatformFacts:
    """What the selection needs to know about the process it runs in."""

    device: str
    """"cuda", "rocm", "cpu" or anything else vLLM reports."""
    capability: tuple[int, int] | None
    """CUDA compute capability (major, minor); None off CUDA."""
    kv_cache_dtype: str
    """The sparse layer's KV cache dtype, "auto" already resolved to the model dtype ("bfloat16", "fp8", ...)."""
    m3lab_triton_available: bool
    """kernels/msa exposes the Triton entry points the GPU impls call."""


@dataclass(frozen=True)
class Selection:
    implementation: Implementation
    reason: str


def parse_version(version: str) -> tuple[int, int]:
    """major.minor of a version string such as "0.32.0", "0.32.1rc1+cpu" or "0.32.0.dev12"."""
    match = re.match(r"^\s*(\d+)\.(\d+)", version)
    if match is None:
        raise UnsupportedVllmVersion(f"cannot parse the vLLM version {version!r}")
    return int(match.group(1)), int(match.group(2))


def check_vllm_version(version: str) -> None:
    """Raise UnsupportedVllmVersion with a clear message unless `version` is a supported series."""
    series = parse_version(version)
    if series not in SUPPORTED_VLLM_SERIES:
        known = ", ".join(f"{a}.{b}.x" for a, b in SUPPORTED_VLLM_SERIES)
        raise UnsupportedVllmVersion(
            f"m3lab MSA plugin: vLLM {version} is not supported (known: {known}); its MiniMax M3 hook points "
            "(select_main_backend_and_impl_cls, select_indexer_impl_cls, the impl base classes) may have moved. "
            "Disable the plugin (VLLM_PLUGINS without 'm3lab_msa', or `m3lab serve --no-msa-plugin`) or install "
            "a supported vLLM."
        )


OUR_KV_DTYPES: dict[str, tuple[str, ...]] = {
    "main": ("bfloat16", "bf16", "fp8", "fp8_e4m3"),
    "indexer": ("bfloat16", "bf16", "fp8", "fp8_e4m3"),
}
"""Cache dtypes our kernels take per layer kind (the attention: bf16, or e4m3 with vLLM's per-tensor K/V scales;
the indexer: bf16, or e4m3 with an e4m3 index q). On CUDA vLLM's "fp8" is e4m3."""


def select_implementation(facts: PlatformFacts, layer: Literal["main", "indexer"] = "main") -> Selection:
    """The implementation for M3's sparse layers (``layer``: the attention or the indexer, whose
    ``facts.kv_cache_dtype`` is its side cache's) in a process with these facts."""
    if facts.device == "cpu":
        return Selection(Implementation.M3LAB_TORCH_CPU, "CPU build of vLLM: its Triton MSA kernels cannot run")
    if facts.device != "cuda":
        return Selection(Implementation.VLLM, f"device {facts.device!r}: vLLM's own choice")
    if facts.capability is None or facts.capability[0] != 9:
        return Selection(Implementation.VLLM, f"CUDA capability {facts.capability}: not SM90, vLLM's own choice")
    kv = facts.kv_cache_dtype
    if kv not in OUR_KV_DTYPES[layer]:
        return Selection(Implementation.VLLM, f"{layer} KV cache {kv}: not {'/'.join(OUR_KV_DTYPES[layer])}, "
                                              "vLLM's own choice")
    if not facts.m3lab_triton_available:
        return Selection(Implementation.VLLM, f"SM90 + {kv} KV, but kernels/msa has no Triton kernels installed")
    if layer == "indexer" and kv.startswith("fp8"):
        return Selection(Implementation.M3LAB_TRITON, f"SM90 + {kv} index cache: m3lab Triton indexer (FP8 MMA)")
    if kv.startswith("fp8"):
        return Selection(Implementation.M3LAB_TRITON, f"SM90 + {kv} KV cache: m3lab MSA kernels (the prefill widens "
                                                      "the pages it reads to bf16 for its CUDA steps)")
    return Selection(Implementation.M3LAB_TRITON, "SM90 + bf16 KV cache: m3lab Triton MSA kernels")
