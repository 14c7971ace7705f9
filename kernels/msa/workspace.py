"""Reusable device buffers for the prefill (v14u): the per-call tensors of ``sparse_attention_triton`` (KV-outer
partials, the split's and the CSR's arrays, the int8 path's bf16 carrier parts) carved from grow-only buffers.

At 128K tokens the bf16 partials alone are 34 GB (4 KV heads x 128K tokens x 16 slots x 16 heads x 128 x 2 B);
allocated per call they go through the caching allocator every time (and through cudaMalloc whenever the cache
cannot serve them). A server keeps one workspace per device, as vLLM keeps one per forward: once it has seen the
largest call (or ``reserve`` sized it), a call allocates nothing, which CUDA-graph capture needs.
"""
from __future__ import annotations

import math

import torch

GRANULE_BYTES = 2 << 20
"""Buffers grow in whole 2 MiB pieces (the caching allocator's large-block rounding), so small size changes between
calls do not reallocate."""


class WorkspaceGrowthError(RuntimeError):
    """A workspace buffer had to grow where it must not: while a CUDA graph is being captured, or after ``lock``."""


class PrefillWorkspace:
    """Grow-only named device buffers that ``sparse_attention_triton(..., workspace=ws)`` takes its per-call tensors
    from instead of allocating them.

    Each name's buffer is as large as the largest request for it so far; ``reserve`` sizes the partials (the
    dominant bytes) for a token budget ahead of the first call. Tensors handed out stay valid until the next call
    that uses the workspace: one workspace serves calls that run one after another on one stream (the sparse layers
    of a forward) on one device. A growth frees the old buffer, so CUDA graphs captured before it would write freed
    memory: growing during capture or after ``lock`` raises ``WorkspaceGrowthError`` (warm it with one eager call at
    the largest size, or ``reserve``, then ``lock``)."""

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}
        self.locked = False
        """Set by ``lock``: any further growth raises."""
        self.grows = 0
        """How many times a buffer was (re)allocated: constant once warm."""

    @property
    def nbytes(self) -> int:
        """Bytes held by all buffers."""
        return sum(buf.numel() for buf in self._buffers.values())

    def lock(self) -> None:
        """Refuse any further growth (e.g. once every CUDA graph that uses the workspace is captured)."""
        self.locked = True

    def take(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A contiguous ``shape`` / ``dtype`` view of buffer ``name`` (grown first if too small; contents undefined,
        whatever the previous call left, like ``torch.empty``)."""
        nbytes = math.prod(shape) * dtype.itemsize
        buf = self._buffers.get(name)
        if buf is not None and buf.device != torch.device(device):
            raise ValueError(f"prefill workspace holds {name!r} on {buf.device}, asked on {device}: keep one "
                             "workspace per device")
        if buf is None or buf.numel() < nbytes:
            buf = self._grow(name, nbytes, torch.device(device))
        return buf[:nbytes].view(dtype).view(shape)

    def reserve(self, num_tokens: int, num_kv_heads: int, group: int, head_dim: int, top_k: int,
                partial_dtype: torch.dtype, device: torch.device) -> None:
        """Size the KV-outer partial buffers for calls of up to ``num_tokens`` query tokens (a token budget, like
        vLLM's ``max_num_batched_tokens``) before the first call; the smaller buffers grow on that call."""
        partial_buffers(self, num_kv_heads, num_tokens, top_k, group, head_dim, partial_dtype, device)

    def _grow(self, name: str, nbytes: int, device: torch.device) -> torch.Tensor:
        if self.locked or (device.type == "cuda" and torch.cuda.is_current_stream_capturing()):
            why = "it is locked" if self.locked else "a CUDA graph is being captured"
            raise WorkspaceGrowthError(f"prefill workspace buffer {name!r} must grow to {nbytes} B but {why}: warm "
                                       "it with an eager call at the largest size (or reserve()) first")
        self._buffers.pop(name, None)  # free the old buffer first: the peak is the new size, not old + new
        buf = torch.empty(-(-nbytes // GRANULE_BYTES) * GRANULE_BYTES, dtype=torch.uint8, device=device)
        self._buffers[name] = buf
        self.grows += 1
        return buf


def empty(workspace: PrefillWorkspace | None, name: str, shape: tuple[int, ...], dtype: torch.dtype,
          device: torch.device) -> torch.Tensor:
    """``torch.empty(shape)``, or the workspace's buffer ``name`` when there is one."""
    if workspace is None:
        return torch.empty(shape, dtype=dtype, device=device)
    return workspace.take(name, shape, dtype, device)


PartialBuffers = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]
"""(partial_o [Hkv, T, top_k, G, d], partial_lse fp32 [Hkv, T, top_k, G], int8 partials' fp32 row scales or None)."""


def partial_buffers(workspace: PrefillWorkspace | None, num_kv_heads: int, num_tokens: int, top_k: int, group: int,
                    head_dim: int, partial_dtype: torch.dtype, device: torch.device) -> PartialBuffers:
    """The KV-outer stage's output buffers (``PartialBuffers``; partial_o in ``partial_dtype``), new or from the
    workspace; the per-row scales only for int8 partials."""
    shape = (num_kv_heads, num_tokens, top_k, group)
    scale = (empty(workspace, "partial_scale", shape, torch.float32, device) if partial_dtype == torch.int8
             else None)
    return (empty(workspace, "partial_o", (*shape, head_dim), partial_dtype, device),
            empty(workspace, "partial_lse", shape, torch.float32, device), scale)
