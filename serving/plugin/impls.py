"""M3 sparse-layer impls backed by kernels/msa: the torch reference (CPU build) or the Triton kernels (SM90).

Imported only by the plugin's hooks once vLLM's M3 modules are loaded (it subclasses their impl bases).
Contract honoured (vLLM 0.32 `common/indexer.py`, `common/sparse_attention.py`): the batch is decode-first;
the indexer writes int32 block ids, valid first then -1, into the shared token-major
`topk_indices_buffer[tokens, kv_heads, top_k]` (decode rows [:nd], prefill rows [nd:n]); the attend reads them
back and attends over the paged cache [pages, kv_heads, 128, 2 * head_dim]. Prefill rows may be a later chunk
of a prompt (context_lens > 0): the reference aligns queries bottom-right (position = seq_len - q_len + i).
"""
from __future__ import annotations

import torch

import importlib
from collections.abc import Callable
from typing import Any

from kernels.msa import reference
from vllm.forward_context import get_forward_context
from vllm.models.minimax_m3.common.indexer import MiniMaxM3IndexerImpl, MiniMaxM3IndexerMetadata
from vllm.models.minimax_m3.common.sparse_attention import MiniMaxM3SparseImpl, MiniMaxM3SparseMetadata


def _kernel(path: str) -> Callable[..., Any]:
    """`module:function` from kernels/msa, imported on first use (Triton stays unloaded on CPU)."""
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


class MSAIndexerImpl(MiniMaxM3IndexerImpl):
    """Index score + top-k through kernels/msa's `msa_index_topk` contract (bf16 index cache)."""

    implementation_name = "m3lab-msa"
    index_topk_fn = "kernels.msa.reference:msa_index_topk"
    writes_in_place = False

    def forward(self, index_query: torch.Tensor, **_: object) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        attn_metadata = get_forward_context().attn_metadata
        if not isinstance(attn_metadata, dict):
            return None, None  # memory-profiling run: caches unbound
        md = attn_metadata[self.index_cache.prefix]
        assert isinstance(md, MiniMaxM3IndexerMetadata)
        n, nd = md.num_actual_tokens, md.num_decode_tokens
        iq = index_query[:n].view(-1, self.num_index_heads, self.index_head_dim)
        cache = self.index_cache.kv_cache
        buf = self.topk_indices_buffer
        if buf is None:
            buf = torch.full((n, self.num_index_heads, self.topk_blocks), -1, dtype=torch.int32, device=iq.device)
        decode_topk = prefill_topk = None
        if md.num_decodes > 0:
            d = md.decode
            assert d is not None
            qsl = reference.decode_query_start_loc(md.num_decodes, d.decode_query_len, iq.device)
            decode_topk = buf[:nd].transpose(0, 1)  # [heads, tokens, k] view of the token-major buffer
            self._select(iq[:nd], cache, d.block_table, qsl, d.seq_lens, d.decode_query_len, decode_topk)
        if md.num_prefills > 0:
            p = md.prefill
            assert p is not None
            prefill_topk = buf[nd:n].transpose(0, 1)
            self._select(iq[nd:n], cache, p.block_table, p.cu_seqlens_q, p.seq_lens, p.max_query_len, prefill_topk)
        return decode_topk, prefill_topk

    def _select(
        self, iq: torch.Tensor, cache: torch.Tensor, block_table: torch.Tensor, qsl: torch.Tensor,
        seq_lens: torch.Tensor, max_query_len: int, out: torch.Tensor,
    ) -> None:
        """Selection [heads, tokens, k] into `out` (a strided view of the shared buffer)."""
        kwargs = dict(top_k=self.topk_blocks, init_blocks=self.init_blocks, local_blocks=self.local_blocks)
        fn = _kernel(self.index_topk_fn)
        if self.writes_in_place:  # Triton: straight into the buffer, no host sync for the query length
            fn(iq, cache, block_table, qsl, seq_lens, max_query_len=max_query_len, out=out, **kwargs)
        else:
            out.copy_(fn(iq, cache, block_table, qsl, seq_lens, **kwargs))


class MSASparseImpl(MiniMaxM3SparseImpl):
    """Exact attention over the selected blocks through kernels/msa's `sparse_attention`/`sparse_decode` contract."""

    implementation_name = "m3lab-msa"
    attention_fn = "kernels.msa.reference:sparse_attention"
    decode_fn = "kernels.msa.reference:sparse_decode"
    writes_in_place = False

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if self.use_fp8_kv:
            raise NotImplementedError(f"m3lab MSA impl: fp8 KV cache ({self.kv_cache_dtype}) is not supported")

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
        if not isinstance(attn_metadata, dict):
            return output  # memory-profiling run
        md = attn_metadata[layer.layer_name]  # type: ignore[attr-defined]
        assert isinstance(md, MiniMaxM3SparseMetadata)
        n, nd = md.num_actual_tokens, md.num_decode_tokens
        topk = layer.topk_indices_buffer[:n].transpose(0, 1)  # type: ignore[attr-defined]  # [Hkv, n, k]
        q = query[:n].view(-1, self.num_heads, self.head_size)
        out = output[:n].view(-1, self.num_heads, self.head_size)
        if md.num_decodes > 0:
            d = md.decode
            assert d is not None
            self._run(self.decode_fn, out[:nd], q[:nd], kv_cache, topk[:, :nd].contiguous(), d.block_table,
                      d.seq_lens, d.decode_query_len, self.scale)
        if md.num_prefills > 0:
            p = md.prefill
            assert p is not None
            self._run(self.attention_fn, out[nd:n], q[nd:n], kv_cache, topk[:, nd:n].contiguous(), p.block_table,
                      p.cu_seqlens_q, p.seq_lens, self.scale)
        return output

    def _run(self, fn_path: str, out: torch.Tensor, *args: object) -> None:
        fn = _kernel(fn_path)
        if self.writes_in_place:
            fn(*args, out=out)
        else:
            out.copy_(fn(*args).to(out.dtype))


class TorchMSAIndexerImpl(MSAIndexerImpl):
    """CPU build: the fp32 torch reference."""

    implementation_name = "m3lab-torch-cpu"


class TorchMSASparseImpl(MSASparseImpl):
    """CPU build: the fp32 torch reference."""

    implementation_name = "m3lab-torch-cpu"


class TritonMSAIndexerImpl(MSAIndexerImpl):
    """SM90 + bf16 KV: m3lab Triton indexer (score + top-k)."""

    implementation_name = "m3lab-triton"
    index_topk_fn = "kernels.msa.indexer:msa_index_topk_triton"
    writes_in_place = True


class TritonMSASparseImpl(MSASparseImpl):
    """SM90 + bf16 KV: m3lab Triton KV-outer prefill and split-K decode."""

    implementation_name = "m3lab-triton"
    attention_fn = "kernels.msa.prefill:sparse_attention_triton"
    decode_fn = "kernels.msa.decode:sparse_decode_triton"
    writes_in_place = True
