"""M3 sparse-layer impls backed by kernels/msa: the torch reference (CPU build) or the Triton kernels (SM90).

Imported only by the plugin's hooks once vLLM's M3 modules are loaded (it subclasses their impl bases). The impls
translate vLLM's metadata into `msa_calls.Batch` and hand the work to kernels/msa (see msa_calls for the contract:
decode-first rows, rebased prefill offsets, the shared token-major `topk_indices_buffer`). Runs inside the layer's
eager break (`_run_attention`), so host syncs of the reference path do not meet CUDA-graph capture.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from vllm.config import get_current_vllm_config_or_none
from vllm.forward_context import get_forward_context
from vllm.models.minimax_m3.common.indexer import MiniMaxM3IndexerImpl, MiniMaxM3IndexerMetadata
from vllm.models.minimax_m3.common.sparse_attention import MiniMaxM3SparseImpl, MiniMaxM3SparseMetadata

from serving.plugin import msa_calls
from serving.plugin.options import CONFIG_KEY, plugin_options


def batch_of(md: MiniMaxM3IndexerMetadata | MiniMaxM3SparseMetadata) -> msa_calls.Batch:
    """The MSA view of either builder's metadata (both builders split the batch identically)."""
    decode = prefill = None
    if md.num_decodes > 0:
        d = md.decode
        assert d is not None
        decode = msa_calls.DecodePart(md.num_decodes, d.block_table, d.seq_lens, d.decode_query_len)
    if md.num_prefills > 0:
        p = md.prefill
        assert p is not None
        # total_kv_blocks: only the sparse builder's metadata has it (the attention's bound for widened fp8 pages)
        prefill = msa_calls.PrefillPart(p.block_table, p.cu_seqlens_q, p.seq_lens, p.max_query_len,
                                        getattr(p, "total_kv_blocks", None))
    return msa_calls.Batch(md.num_actual_tokens, md.num_decode_tokens, decode, prefill)


class MSAIndexerImpl(MiniMaxM3IndexerImpl):
    """Index score + top-k into the shared selection buffer (bf16 index cache, or e4m3 with an e4m3 index_query as
    vLLM's `indexer_kv_dtype="fp8"` emits it: the Triton indexer runs an FP8 MMA then)."""

    kernels: ClassVar[msa_calls.MSAKernels] = msa_calls.REFERENCE

    def forward(self, index_query: torch.Tensor, **_: object) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        attn_metadata = get_forward_context().attn_metadata
        if not isinstance(attn_metadata, dict):
            return None, None  # memory-profiling run: caches unbound
        md = attn_metadata[self.index_cache.prefix]
        assert isinstance(md, MiniMaxM3IndexerMetadata)
        batch = batch_of(md)
        n, nd = batch.num_tokens, batch.num_decode_tokens
        iq = index_query[:n].view(-1, self.num_index_heads, self.index_head_dim)
        buf = self.topk_indices_buffer
        if buf is None:
            buf = torch.full((n, self.num_index_heads, self.topk_blocks), -1, dtype=torch.int32, device=iq.device)
        msa_calls.index_batch(self.kernels, batch, iq, self.index_cache.kv_cache, buf, self.topk_blocks,
                              self.init_blocks, self.local_blocks)
        decode_topk = buf[:nd].transpose(0, 1) if batch.decode is not None else None
        prefill_topk = buf[nd:n].transpose(0, 1) if batch.prefill is not None else None
        return decode_topk, prefill_topk


class MSASparseImpl(MiniMaxM3SparseImpl):
    """Exact attention over the selected blocks (bf16/fp16 KV cache, or fp8 e4m3 with per-tensor K/V scales)."""

    kernels: ClassVar[msa_calls.MSAKernels] = msa_calls.REFERENCE

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if self.use_fp8_kv and self.kv_cache_fp8_dtype != torch.float8_e4m3fn:
            raise NotImplementedError(f"m3lab MSA impl: fp8 KV cache {self.kv_cache_dtype} "
                                      f"({self.kv_cache_fp8_dtype}) is not supported: float8_e4m3fn only")
        # the model length (0: unknown) sizes the widened fp8 pages reserved in the memory-profiling run
        config = get_current_vllm_config_or_none()
        self.max_model_len = config.model_config.max_model_len if config and config.model_config else 0
        # our engine options (--additional-config '{"m3lab_msa": {...}}'); refused here, at model load, when this
        # process cannot honour them, rather than in the first request
        self.options = plugin_options(config.additional_config if config else None)
        if self.options.fp8_step:
            device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None
            problem = msa_calls.fp8_step_problem(self.kernels, self.use_fp8_kv, self.num_heads, self.num_kv_heads,
                                                 self.head_size, self.topk_blocks, device)
            if problem:
                raise ValueError(f"m3lab MSA plugin: additional_config {CONFIG_KEY}.fp8_step cannot run here: "
                                 f"{problem}")

    def forward(
        self,
        layer: object,
        query: torch.Tensor,
        kv_cache: torch.Tensor,
        output: torch.Tensor,
        *,
        query_fp8: torch.Tensor | None = None,
    ) -> torch.Tensor:
        attn_metadata = get_forward_context().attn_metadata
        if not isinstance(attn_metadata, dict):  # memory-profiling run: caches unbound
            if self.kernels.workspace:
                self._reserve_workspace(query)
            return output
        md = attn_metadata[layer.layer_name]  # type: ignore[attr-defined]
        assert isinstance(md, MiniMaxM3SparseMetadata)
        batch = batch_of(md)
        n = batch.num_tokens
        q = query[:n].view(-1, self.num_heads, self.head_size)
        out = output[:n].view(-1, self.num_heads, self.head_size)
        kv_scales = msa_calls.layer_kv_scales(layer) if self.use_fp8_kv else None
        if self.use_fp8_kv:
            kv_cache = kv_cache.view(self.kv_cache_fp8_dtype)  # vLLM allocates fp8 caches as uint8
        msa_calls.attend_batch(self.kernels, batch, q, kv_cache, layer.topk_indices_buffer, out,  # type: ignore[attr-defined]
                               self.scale, kv_scales, self.options.fp8_step, self.options.fp8_q_terms)
        return output

    def _reserve_workspace(self, query: torch.Tensor) -> None:
        """In vLLM's profiling run (``query`` has the token budget's rows): the prefill workspace at its working
        size, so vLLM counts it before it sizes the KV cache (``msa_calls.reserve_prefill``)."""
        pages = -(-self.max_model_len // self.block_size) if self.use_fp8_kv else 0
        msa_calls.reserve_prefill(query.device, query.shape[0], self.num_kv_heads, self.num_heads // self.num_kv_heads,
                                  self.head_size, self.topk_blocks, pages, query.dtype, self.options.fp8_step)


class TorchMSAIndexerImpl(MSAIndexerImpl):
    """CPU build: the fp32 torch reference."""


class TorchMSASparseImpl(MSASparseImpl):
    """CPU build: the fp32 torch reference."""


class TritonMSAIndexerImpl(MSAIndexerImpl):
    """SM90 + bf16 or fp8 e4m3 index cache: m3lab Triton indexer (score + top-k)."""

    kernels = msa_calls.TRITON


class TritonMSASparseImpl(MSASparseImpl):
    """SM90 + bf16 or fp8 e4m3 KV: m3lab Triton KV-outer prefill and split-K decode (tile-outer step: the sm_90a CUDA
    kernel when it builds, else Triton; kernels/msa/cuda; an fp8 cache's pages are widened to bf16 for the CUDA steps,
    kernels/msa/widen.py)."""

    kernels = msa_calls.TRITON

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        from kernels.msa import cuda

        cuda.prepare()  # build (once, cached) at model load, never inside a request; a failure logs one line
