"""How a decode-first vLLM batch is handed to kernels/msa (no vLLM import: testable with the Triton interpreter).

vLLM's contract (0.32, `vllm/models/minimax_m3/common/`): the batch is decode-first; decode rows [:nd] have
`decode_query_len` queries per request, prefill rows [nd:n] have `cu_seqlens_q` rebased to 0 and `seq_lens` =
context + new tokens; the selection lives in a token-major int32 buffer [tokens, kv_heads, top_k] (valid ids first,
then -1) that the indexer writes and the attention reads.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from kernels.msa.inputs import dequantize_kv_fp8
from kernels.msa.reference import decode_query_start_loc
from kernels.msa.workspace import PrefillWorkspace


@dataclass(frozen=True)
class MSAKernels:
    """Where an implementation's three entry points live ("module:function") and how they return results."""

    index_topk: str
    attention: str
    decode: str
    in_place: bool
    """The functions take `out=` (and the indexer `max_query_len=`); else they return a fresh tensor to copy."""
    workspace: bool = False
    """The attention takes `workspace=` (a `kernels.msa.workspace.PrefillWorkspace` for its per-call buffers)."""
    kv_scales: bool = False
    """The attention and decode take an fp8 e4m3 cache with `k_scale=` / `v_scale=`; else such a cache is
    dequantised to fp32 before the call (the reference)."""
    fp8_step: bool = False
    """The attention takes ``fp8_step=`` (its tile-outer step in FP8 on an fp8 e4m3 cache, kernels/msa v18)."""


REFERENCE = MSAKernels("kernels.msa.reference:msa_index_topk", "kernels.msa.reference:sparse_attention",
                       "kernels.msa.reference:sparse_decode", in_place=False)
TRITON = MSAKernels("kernels.msa.indexer:msa_index_topk_triton", "kernels.msa.prefill:sparse_attention_triton",
                    "kernels.msa.decode:sparse_decode_triton", in_place=True, workspace=True, kv_scales=True,
                    fp8_step=True)

_WORKSPACES: dict[torch.device, PrefillWorkspace] = {}
"""One prefill workspace per device, shared by every sparse layer: the layers of a forward run one after another on
one stream, so the buffers (34 GB of partials for a 128K-token prefill) are needed by one layer at a time (v14u)."""


def prefill_workspace(device: torch.device) -> PrefillWorkspace:
    """The device's prefill workspace (made on first use; it grows to the largest prefill seen, then stays)."""
    return _WORKSPACES.setdefault(device, PrefillWorkspace())


def reserve_prefill(device: torch.device, num_tokens: int, num_kv_heads: int, group: int, head_dim: int, top_k: int,
                    widened_pages: int = 0, dtype: torch.dtype = torch.bfloat16,
                    fp8_step: bool = False) -> PrefillWorkspace:
    """Size the device's prefill workspace during vLLM's memory-profiling run, so that the memory vLLM measures
    there (and leaves out of the KV cache) includes it: the partials (in the dtype the prefill takes,
    ``kernels.msa.prefill.default_partial_dtype``: ``dtype``, q's, or int8 for the FP8 step at 8 query heads per KV
    head) for ``num_tokens`` query tokens (the profiling batch is the token budget) and, for an fp8 cache,
    ``widened_pages`` pages widened to ``dtype`` (one request of the model's length), and with ``fp8_step`` the FP8
    step's e4m3 K / V^T copy of those pages. Without it the first long prefill would allocate them on top of a
    cache sized to fill the card. Nothing grows while a CUDA graph is being captured."""
    from kernels.msa.prefill import default_partial_dtype
    from kernels.msa.widen import transposed_buffer, widened_buffer

    ws = prefill_workspace(device)
    if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        return ws
    ws.reserve(num_tokens, num_kv_heads, group, head_dim, top_k, default_partial_dtype(dtype, group, fp8_step), device)
    if widened_pages > 0:
        widened_buffer(ws, widened_pages, num_kv_heads, head_dim, dtype, device)
        if fp8_step:
            transposed_buffer(ws, widened_pages, num_kv_heads, head_dim, device)
    return ws


def fp8_step_problem(kernels: MSAKernels, fp8_cache: bool, num_heads: int, num_kv_heads: int, head_dim: int,
                     top_k: int, device: torch.device | None) -> str | None:
    """Why a sparse layer of this shape (one rank's heads) cannot run its prefill with ``fp8_step`` (None: it
    can). Asked once at model load: it builds and loads the sm_90a library if needed (the FP8 step has no Triton
    twin), so a request never meets the failure."""
    if not fp8_cache:
        return "the KV cache is not fp8 e4m3 (serve with --kv-cache-dtype fp8)"
    if not kernels.fp8_step:
        return f"{kernels.attention} has no FP8 step (SM90 with the m3lab Triton/CUDA kernels only)"
    from kernels.msa import cuda

    groups = [g * num_kv_heads for g in cuda.GROUPS]
    if num_heads not in groups or head_dim != cuda.HEAD_DIM or top_k > cuda.MAX_FOLD_SLOTS:
        return (f"the CUDA step takes {' or '.join(map(str, cuda.GROUPS))} query heads per KV head, head_dim "
                f"{cuda.HEAD_DIM}, top-k <= {cuda.MAX_FOLD_SLOTS}; this rank's layer has {num_heads} / "
                f"{num_kv_heads} heads, head_dim {head_dim}, top-k {top_k}")
    if device is None:
        return "no CUDA device"
    return cuda.device_reason(device) or cuda.prepare()


@dataclass(frozen=True)
class DecodePart:
    num_requests: int
    block_table: torch.Tensor
    seq_lens: torch.Tensor
    query_len: int
    """Queries per decode request (1, or 1 + speculative tokens)."""


@dataclass(frozen=True)
class PrefillPart:
    block_table: torch.Tensor
    cu_seqlens_q: torch.Tensor
    """[num_prefills + 1], rebased to 0 at the first prefill row."""
    seq_lens: torch.Tensor
    max_query_len: int
    total_kv_blocks: int | None = None
    """Host-side upper bound on the cache pages the prefills read (vLLM's metadata: their ceil(seq_len / 128)
    summed); sizes the bf16 copy of an fp8 cache's pages."""


@dataclass(frozen=True)
class Batch:
    """The part of vLLM's per-layer metadata MSA needs."""

    num_tokens: int
    num_decode_tokens: int
    decode: DecodePart | None
    prefill: PrefillPart | None


def _fn(path: str) -> Callable[..., Any]:
    """`module:function`, imported on first use (Triton stays unloaded where the reference is used)."""
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def index_batch(kernels: MSAKernels, batch: Batch, index_q: torch.Tensor, index_cache: torch.Tensor,
                buffer: torch.Tensor, top_k: int, init_blocks: int, local_blocks: int) -> None:
    """Fill buffer[:num_tokens] (token-major) with the selection of every row of the batch."""
    n, nd = batch.num_tokens, batch.num_decode_tokens
    opts = dict(top_k=top_k, init_blocks=init_blocks, local_blocks=local_blocks)
    fn = _fn(kernels.index_topk)
    parts = []
    if batch.decode is not None:
        d = batch.decode
        qsl = decode_query_start_loc(d.num_requests, d.query_len, index_q.device)
        parts.append((slice(0, nd), d.block_table, qsl, d.seq_lens, d.query_len))
    if batch.prefill is not None:
        p = batch.prefill
        parts.append((slice(nd, n), p.block_table, p.cu_seqlens_q, p.seq_lens, p.max_query_len))
    for rows, table, qsl, seq_lens, max_q in parts:
        out = buffer[rows].transpose(0, 1)  # [heads, tokens, k] view of the token-major buffer
        if kernels.in_place:
            fn(index_q[rows], index_cache, table, qsl, seq_lens, max_query_len=max_q, out=out, **opts)
        else:
            out.copy_(fn(index_q[rows], index_cache, table, qsl, seq_lens, **opts))


def attend_batch(kernels: MSAKernels, batch: Batch, q: torch.Tensor, kv_cache: torch.Tensor, buffer: torch.Tensor,
                 out: torch.Tensor, scale: float, kv_scales: tuple[float, float] | None = None,
                 fp8_step: bool = False, fp8_q_terms: int = 1) -> None:
    """out[:num_tokens] = attention of q [tokens, heads, d] over the blocks selected in buffer. ``kv_scales``:
    (k_scale, v_scale) of an fp8 e4m3 ``kv_cache`` (vLLM's per-tensor ``_k_scale_float`` / ``_v_scale_float``).
    ``fp8_step``: the prefill rows' tile-outer step in FP8 (``kernels.fp8_step`` and an fp8 cache; decode rows are
    unchanged); ValueError when either is missing. ``fp8_q_terms``: with ``fp8_step``, Q as 1 or 2 e4m3 terms
    (the prefill's ``fp8_q_terms``)."""
    if fp8_step and not (kernels.fp8_step and kv_scales is not None):
        raise ValueError(f"fp8_step needs an fp8 e4m3 KV cache and kernels that take it "
                         f"({kernels.attention} with {'an fp8' if kv_scales is not None else 'a non-fp8'} cache)")
    n, nd = batch.num_tokens, batch.num_decode_tokens
    sel = buffer[:n].transpose(0, 1)  # [kv_heads, tokens, k]
    scales: dict[str, Any] = {}
    if kv_scales is not None and kernels.kv_scales:
        scales = {"k_scale": kv_scales[0], "v_scale": kv_scales[1]}
    elif kv_scales is not None:
        kv_cache = dequantize_kv_fp8(kv_cache, *kv_scales)
    if batch.decode is not None:
        d = batch.decode
        _call(kernels.decode, kernels.in_place, out[:nd], q[:nd], kv_cache, sel[:, :nd].contiguous(), d.block_table,
              d.seq_lens, d.query_len, scale, **scales)
    if batch.prefill is not None:
        p = batch.prefill
        extra: dict[str, Any] = {"workspace": prefill_workspace(q.device)} if kernels.workspace else {}
        if scales:
            extra["max_read_pages"] = p.total_kv_blocks
        if fp8_step:
            extra["fp8_step"] = True
            if fp8_q_terms != 1:
                extra["fp8_q_terms"] = fp8_q_terms
        _call(kernels.attention, kernels.in_place, out[nd:n], q[nd:n], kv_cache, sel[:, nd:n].contiguous(),
              p.block_table, p.cu_seqlens_q, p.seq_lens, scale, **extra, **scales)


def layer_kv_scales(layer: object) -> tuple[float, float]:
    """(k_scale, v_scale) of an fp8 KV cache: vLLM's per-tensor floats, as its SM100 MSA kernels read them. Per-head
    scale tensors (more than one element) are refused: the kernels take one scale per tensor."""
    for name in ("_k_scale", "_v_scale"):
        scale = getattr(layer, name, None)
        if isinstance(scale, torch.Tensor) and scale.numel() != 1:
            raise NotImplementedError(f"m3lab MSA impl: per-head fp8 KV scales ({name} has {scale.numel()} "
                                      "elements); one scale per tensor only")
    return float(getattr(layer, "_k_scale_float", 1.0)), float(getattr(layer, "_v_scale_float", 1.0))


def _call(path: str, in_place: bool, out: torch.Tensor, *args: Any, **kwargs: Any) -> None:
    fn = _fn(path)
    if in_place:
        fn(*args, out=out, **kwargs)
    else:
        out.copy_(fn(*args, **kwargs).to(out.dtype))
