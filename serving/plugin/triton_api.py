"""Whether kernels/msa ships the Triton entry points the GPU impls call (checked without importing Triton)."""
from __future__ import annotations

import importlib.util

TRITON_MODULES = ("kernels.msa.indexer", "kernels.msa.prefill", "kernels.msa.decode")
"""Modules holding `msa_index_topk_triton`, `sparse_attention_triton`, `sparse_decode_triton` (kernels/msa/README)."""


def available() -> bool:
    """True when Triton and all three kernel modules can be found."""
    try:
        if importlib.util.find_spec("triton") is None:
            return False
        return all(importlib.util.find_spec(name) is not None for name in TRITON_MODULES)
    except (ImportError, ValueError):
        return False
