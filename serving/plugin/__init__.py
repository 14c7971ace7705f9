"""vLLM general plugin `m3lab_msa`: MiniMax M3's sparse (MSA) layers on our kernels.

Entry point `serving.plugin:register` (pyproject `vllm.general_plugins`). It runs in every vLLM process, so it only
installs import hooks (no vLLM or torch import here); the work happens if and when vLLM's MiniMax M3 modules load.
See README.md in this folder.
"""
from __future__ import annotations

from serving.plugin.hooks import on_import

PLUGIN_NAME = "m3lab_msa"
"""Name in the `vllm.general_plugins` group; vLLM's allow-list env VLLM_PLUGINS enables/disables it by this name."""

M3_MODEL_MODULE = "vllm.models.minimax_m3.nvidia.model"
M3_INDEXER_MODULE = "vllm.models.minimax_m3.common.indexer"
M3_PROCESSOR_MODULE = "vllm.transformers_utils.processors.minimax_m3"


def _after_indexer(module):  # thin trampolines keep install.py (and its imports) out of non-M3 processes
    from serving.plugin import install

    install.after_indexer_module(module)


def _after_model(module):
    from serving.plugin import install

    install.after_model_module(module)


def _before_processor(module):
    from serving.plugin import install

    install.before_processor_module(module)


def register() -> None:
    """Install the M3 import hooks (idempotent, cheap, safe to call in every process and many times)."""
    on_import(M3_PROCESSOR_MODULE, before=_before_processor)
    on_import(M3_INDEXER_MODULE, after=_after_indexer)
    on_import(M3_MODEL_MODULE, after=_after_model)
