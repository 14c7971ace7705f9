"""Torch implementations of the M3 ops the CPU build of vLLM lacks (pure torch; no vLLM import).

- Gemma RMSNorm (vLLM's M3 imports FlashInfer inside forward): y = x / rms(x) * (1 + w), fp32 inside.
- The fused per-head q/k norm + partial NeoX RoPE + paged-cache insert (`fused_minimax_m3_qknorm_rope_kv_insert`,
  a CUDA-only op), with the same in-place contract as the CUDA kernel (bf16/fp16/fp32 or fp8 e4m3 KV caches).
- The w13 reorder that lets the CPU experts' `swigluoai` (gate/up interleaved) run M3's half-split weights.
"""
from __future__ import annotations

import torch

UNQUANTIZED = ("auto", "bfloat16", "float16", "float32")
FP8_E4M3 = ("fp8", "fp8_e4m3")
"""vLLM's names of an fp8 e4m3 KV cache (on CPU and CUDA "fp8" is e4m3)."""
FP8_E4M3_MAX = 448.0


class FusedOpUnsupported(ValueError):
    """The fused q/k-norm op was asked for a mode the torch path does not implement (fp8/nvfp4 caches...)."""


def gemma_rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Gemma-style RMSNorm over the last dim, computed in fp32, returned in x's dtype."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + eps)
    return (xf * (1.0 + weight.float())).to(x.dtype)


def gemma_fused_add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """FlashInfer's in-place contract: residual <- x + residual; x <- norm(residual). Returns (x, residual)."""
    summed = x.float() + residual.float()
    residual.copy_(summed)
    x.copy_(gemma_rms_norm(residual, weight, eps))
    return x, residual


def neox_rope(x: torch.Tensor, positions: torch.Tensor, cos_sin_cache: torch.Tensor, rotary_dim: int) -> torch.Tensor:
    """Partial NeoX RoPE on fp32 x [tokens, heads, head_dim]: rotates the first rotary_dim dims (halves paired)."""
    cos_sin = cos_sin_cache.index_select(0, positions.long()).float()  # [T, rotary_dim]: cos | sin
    half = rotary_dim // 2
    cos, sin = cos_sin[:, None, :half], cos_sin[:, None, half:rotary_dim]
    x1, x2 = x[..., :half], x[..., half:rotary_dim]
    rotated = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
    return torch.cat([rotated, x[..., rotary_dim:]], dim=-1)


def _norm_rope(
    x: torch.Tensor, weight: torch.Tensor, positions: torch.Tensor, cos_sin_cache: torch.Tensor, rotary_dim: int, eps: float
) -> torch.Tensor:
    """Per-head Gemma norm then partial RoPE; fp32 in, fp32 out (one rounding at the store, like the kernel)."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + eps) * (1.0 + weight.float())
    return neox_rope(xf, positions, cos_sin_cache, rotary_dim)


def _scatter_pages(cache: torch.Tensor, slots: torch.Tensor, values: torch.Tensor) -> None:
    """Write values [T, ...] into a paged cache viewed as [pages * block, ...] at `slots`; slot < 0 is padding."""
    keep = slots >= 0
    if not bool(keep.any()):
        return
    flat = cache.view(-1, *cache.shape[2:]) if cache.dim() == 3 else None
    if flat is not None:  # index cache [pages, block, dim]
        flat[slots[keep].long()] = values[keep].to(cache.dtype)
        return
    raise FusedOpUnsupported(f"unexpected cache rank {cache.dim()}")


def fused_qknorm_rope_kv_insert(
    qkv: torch.Tensor,
    q_norm_weight: torch.Tensor,
    k_norm_weight: torch.Tensor,
    cos_sin_cache: torch.Tensor,
    positions: torch.Tensor,
    num_heads: int,
    num_kv_heads: int,
    rotary_dim: int,
    eps: float,
    index_q_norm_weight: torch.Tensor | None = None,
    index_k_norm_weight: torch.Tensor | None = None,
    num_index_heads: int = 0,
    slot_mapping: torch.Tensor | None = None,
    index_slot_mapping: torch.Tensor | None = None,
    kv_cache: torch.Tensor | None = None,
    index_cache: torch.Tensor | None = None,
    block_size: int = 0,
    q_out: torch.Tensor | None = None,
    index_q_out: torch.Tensor | None = None,
    kv_cache_dtype: str = "auto",
    skip_index_branch: bool = False,
    q_fp8_out: torch.Tensor | None = None,
    q_fp8_scale: float = 1.0,
    kv_k_scale: torch.Tensor | None = None,
    kv_v_scale: torch.Tensor | None = None,
) -> None:
    """Torch twin of vLLM's `fused_minimax_m3_qknorm_rope_kv_insert` (same signature, same in-place effects).

    qkv rows are [q | k | v] (dense) or [q | k | v | index_q | index_k] (sparse, one shared index-key head).
    q, k, index_q, index_k get per-head Gemma norm + partial NeoX RoPE; q / index_q go to q_out / index_q_out
    when given (else in place); k, v and index_k are rewritten in place and, with caches, inserted at the slots.
    """
    problems = []
    if q_fp8_out is not None or kv_k_scale is not None or kv_v_scale is not None:
        problems.append("fp8 query output / nvfp4 KV scales")
    if kv_cache_dtype not in UNQUANTIZED + FP8_E4M3:
        problems.append(f"kv_cache_dtype={kv_cache_dtype!r} (unquantized or fp8 e4m3 caches only)")
    if problems:
        raise FusedOpUnsupported("torch fused q/k-norm op does not implement: " + "; ".join(problems))
    head_dim = q_norm_weight.shape[0]
    n = qkv.shape[0]
    q_size, kv_size = num_heads * head_dim, num_kv_heads * head_dim
    q = qkv[:, :q_size].view(n, num_heads, head_dim)
    k = qkv[:, q_size:q_size + kv_size].view(n, num_kv_heads, head_dim)
    v = qkv[:, q_size + kv_size:q_size + 2 * kv_size].view(n, num_kv_heads, head_dim)
    q_new = _norm_rope(q, q_norm_weight, positions, cos_sin_cache, rotary_dim, eps).to(qkv.dtype)
    k_new = _norm_rope(k, k_norm_weight, positions, cos_sin_cache, rotary_dim, eps).to(qkv.dtype)
    k.copy_(k_new)
    (q_out.view(n, num_heads, head_dim) if q_out is not None else q).copy_(q_new)
    if kv_cache is not None and slot_mapping is not None and kv_cache.numel() > 0:
        if kv_cache_dtype in FP8_E4M3:  # vLLM allocates it as bytes
            kv_cache = kv_cache.view(torch.float8_e4m3fn)
        _insert_kv(kv_cache, slot_mapping[:n], k_new, v)
    if num_index_heads <= 0 or skip_index_branch:
        return
    if index_q_norm_weight is None or index_k_norm_weight is None:
        raise FusedOpUnsupported("a sparse layer (num_index_heads > 0) needs index_q/index_k norm weights")
    idx_dim = index_q_norm_weight.shape[0]
    base = q_size + 2 * kv_size
    iq = qkv[:, base:base + num_index_heads * idx_dim].view(n, num_index_heads, idx_dim)
    ik = qkv[:, base + num_index_heads * idx_dim:base + (num_index_heads + 1) * idx_dim].view(n, 1, idx_dim)
    iq_new = _norm_rope(iq, index_q_norm_weight, positions, cos_sin_cache, rotary_dim, eps)
    ik_new = _norm_rope(ik, index_k_norm_weight, positions, cos_sin_cache, rotary_dim, eps).to(qkv.dtype)
    ik.copy_(ik_new)
    target = index_q_out.view(n, num_index_heads, idx_dim) if index_q_out is not None else iq
    target.copy_(iq_new.to(target.dtype))
    if index_cache is not None and index_cache.numel() > 0:
        slots = index_slot_mapping if index_slot_mapping is not None else slot_mapping
        if slots is not None:
            _scatter_pages(index_cache, slots[:n], ik_new[:, 0])


def _insert_kv(kv_cache: torch.Tensor, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Insert k, v [T, Hkv, D] into the M3 cache [pages, Hkv, block, 2D] (K = [..., :D], V = [..., D:])."""
    keep = slots >= 0
    if not bool(keep.any()):
        return
    block = kv_cache.shape[2]
    s = slots[keep].long()
    page, offset = s // block, s % block
    head_dim = k.shape[-1]
    # Advanced indexing [page, :, offset] puts the token axis first: [T, Hkv, 2D].
    kv_cache[page, :, offset, :head_dim] = _to_cache(k[keep], kv_cache.dtype)
    kv_cache[page, :, offset, head_dim:] = _to_cache(v[keep], kv_cache.dtype)


def _to_cache(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """x in the cache's dtype; into fp8 e4m3 a saturating cast with no scale (the fused op takes no K/V scale for
    an fp8 cache; the attention applies the layer's per-tensor scales), never NaN for |x| > 448."""
    if dtype == torch.float8_e4m3fn:
        return x.float().clamp(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(dtype)
    return x.to(dtype)


def interleave_w13(w13: torch.Tensor) -> torch.Tensor:
    """[experts, 2I, H] half-split rows [gate | up] -> interleaved [g0, u0, g1, u1, ...] (what CPU `swigluoai` reads)."""
    two_i = w13.shape[1]
    if two_i % 2:
        raise ValueError(f"w13 has an odd number of rows ({two_i}); expected [gate | up] halves")
    half = two_i // 2
    perm = torch.stack([torch.arange(half), torch.arange(half, two_i)], dim=1).flatten().to(w13.device)
    return w13.index_select(1, perm)
