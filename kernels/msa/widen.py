"""FP8 KV cache -> bf16 pages for the sm_90a prefill kernels (v17).

The CUDA KV-outer and tile-outer kernels read bf16 K/V straight into the tensor cores (TMA, no conversion step),
so an fp8 e4m3 cache used to send the whole prefill to the Triton kernels (which widen after each load) at about
half the CUDA path's speed. Here the pages a prefill call can read (each request's first ceil(seq_len / 128)
block-table entries) are widened once per call into a compact bf16 cache, and the block table is renumbered to
point into it; the CUDA kernels then run unchanged. This is vLLM's own pattern for quantised caches in prefill
(MLA's ``gather_and_maybe_dequant_cache`` into a workspace).

Exactness: e4m3 values are exact in bf16, so K is copied exactly and its per-tensor scale is folded into the
softmax scale by the caller; V is multiplied by its scale in fp32 and rounded once to bf16 (a relative 2^-9 per
element, 1/32 of e4m3's own step). Cost: read fp8 + write bf16 of the referenced pages (128K tokens x 4 KV heads:
128 MB in, 256 MB out) once per call. Memory: one page per distinct physical page the call references, at most
``min(cache pages, block-table entries, the caller's bound)`` bf16 pages (2x the fp8 bytes), taken from the prefill
workspace when there is one. No host sync: the page numbering is a scatter + cumsum on the device (CUDA-graph safe).

v18, pages for the FP8 tile-outer step (``transposed=True``): the same pass also writes each page as e4m3 bytes with
K as it is and V transposed (V^T: head dim x keys, keys contiguous), because FP8 wgmma takes both operands K-major
only; within each 32-key group the keys are stored in ``fp8_key_order`` so that the S accumulator's registers are
the P operand as they lie (kernels/msa/cuda/tile_outer_sm90.cu, ``to_fp8``). Scales are not applied there (the
kernel takes them). Extra: 1 B per element of the pages read (half the bf16 copy).

v18p: a prefill with the FP8 step widens after its tile split and writes the transposed copy only of the (page, KV
head) pairs some tile-outer work item reads (``tile_read_flags`` from the split's unions): a chunk whose selections
give no tile a shared block (the indexer's random selections at long context) writes none.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from kernels.msa.reference import BLOCK_SIZE
from kernels.msa.workspace import PrefillWorkspace, empty

FP8_CACHE_DTYPE = torch.float8_e4m3fn
"""The fp8 cache dtype the MSA kernels take (vLLM's "fp8" / "fp8_e4m3" on CUDA)."""


@triton.jit
def _fp8_key(p):
    """Key stored at position p of a transposed page (``fp8_key_order``'s rule)."""
    r = p % 16
    t = r // 4
    j = r % 4
    return p - r + tl.where(j < 2, 2 * t + j, 6 + 2 * t + j)


@triton.jit
def _widen_kernel(src_ptr, dst_ptr, t_ptr, slot_ptr, read_ptr, v_scale, capacity,
                  s_page, s_head, s_row, d_page, d_head, t_page, t_head,
                  BLOCK: tl.constexpr, HEAD_DIM: tl.constexpr, TRANSPOSED: tl.constexpr, READ: tl.constexpr):
    """One (physical page, KV head): the page's K copied, its V times ``v_scale``, into compact page ``slot``
    (slot < 0: the call does not read this page; slot >= capacity only if a caller's page bound was wrong: never
    written out of bounds). TRANSPOSED: also the page's e4m3 K and V^T (keys in ``fp8_key_order``) into ``t_ptr``,
    with READ only where ``read_ptr`` [capacity, kv_heads] flags the pair (``tile_read_flags``)."""
    page = tl.program_id(0)
    head = tl.program_id(1)
    slot = tl.load(slot_ptr + page)
    if slot < 0 or slot >= capacity:
        return
    rows = tl.arange(0, BLOCK)[:, None]
    cols = tl.arange(0, HEAD_DIM)[None, :]
    base = src_ptr + page.to(tl.int64) * s_page + head * s_head
    src = base + rows * s_row + cols
    dst = dst_ptr + slot.to(tl.int64) * d_page + head * d_head + rows * (2 * HEAD_DIM) + cols
    k = tl.load(src)
    tl.store(dst, k.to(dst_ptr.dtype.element_ty))
    v = tl.load(src + HEAD_DIM)
    tl.store(dst + HEAD_DIM, (v.to(tl.float32) * v_scale).to(dst_ptr.dtype.element_ty))
    wanted = TRANSPOSED
    if READ:
        wanted = tl.load(read_ptr + slot.to(tl.int64) * tl.num_programs(1) + head) != 0
    if wanted:
        t_dst = t_ptr + slot.to(tl.int64) * t_page + head * t_head
        tl.store(t_dst + rows * (2 * HEAD_DIM) + cols, k)
        dims = tl.arange(0, HEAD_DIM)[:, None]
        positions = tl.arange(0, BLOCK)[None, :]
        vt = tl.load(base + _fp8_key(positions) * s_row + HEAD_DIM + dims)
        tl.store(t_dst + dims * (2 * HEAD_DIM) + HEAD_DIM + positions, vt)


@triton.jit
def _mark_kernel(pages_ptr, size_ptr, flags_ptr, num_tiles, max_union, capacity,
                 TILES: tl.constexpr, UNION: tl.constexpr):
    """Flag [page, KV head] for every union entry of a tile with tile-outer work (union size <= max_union)."""
    h = tl.program_id(1)
    t = tl.program_id(0) * TILES + tl.arange(0, TILES)[:, None]
    j = tl.arange(0, UNION)[None, :]
    row = h.to(tl.int64) * num_tiles + t
    n = tl.load(size_ptr + row, mask=t < num_tiles, other=0)
    ok = (t < num_tiles) & (j < n) & (n <= max_union)
    p = tl.load(pages_ptr + row * max_union + j, mask=ok, other=0)
    ok = ok & (p >= 0) & (p < capacity)  # a wrong page bound leaves pages unflagged, never writes out of bounds
    tl.store(flags_ptr + p.to(tl.int64) * tl.num_programs(1) + h, tl.full(p.shape, 1, tl.int8), mask=ok)


def tile_read_flags(pages: torch.Tensor, union_size: torch.Tensor, capacity: int,
                    workspace: PrefillWorkspace | None = None) -> torch.Tensor:
    """int8 [capacity, kv_heads]: 1 where a tile-outer work item reads the compact page on that KV head (a tile
    split's ``pages`` [kv_heads, tiles, max_union] and ``union_size`` [kv_heads, tiles]; sizes > max_union run
    KV-outer and read nothing here). On the device, no sync."""
    num_kv_heads, num_tiles, max_union = pages.shape
    if not (pages.is_contiguous() and union_size.is_contiguous()):
        raise ValueError("tile_read_flags needs the split's contiguous pages and union_size")
    flags = empty(workspace, "fp8_read", (capacity, num_kv_heads), torch.int8, pages.device).zero_()
    tiles = 16
    _mark_kernel[(triton.cdiv(num_tiles, tiles), num_kv_heads)](
        pages, union_size, flags, num_tiles, max_union, capacity, TILES=tiles,
        UNION=triton.next_power_of_2(max(max_union, 1)), num_warps=2)
    return flags


def fp8_key_order(block: int = BLOCK_SIZE) -> torch.Tensor:
    """int64 [block]: the key each position of a transposed page's V^T holds. Per 32-key group, position 4t + j
    (t < 4, j < 4) holds key 2t + j for j < 2 and 8 + 2t + j - 2 otherwise, the same for positions 16 + ..., i.e. the
    keys in the order a thread of an m64nNk32 FP8 wgmma finds them in its S accumulator."""
    p = torch.arange(block)
    r = p % 16
    t, j = r // 4, r % 4
    return p - r + torch.where(j < 2, 2 * t + j, 6 + 2 * t + j)


def page_slots(block_table: torch.Tensor, seq_lens: torch.Tensor, num_pages: int) -> torch.Tensor:
    """int32 [num_pages]: for each physical cache page the call reads, its index in the compact cache (pages in
    physical order, each once even when several requests share it); -1 for pages it does not read."""
    width = block_table.shape[1]
    used_blocks = (seq_lens.to(torch.int64) + BLOCK_SIZE - 1) // BLOCK_SIZE
    valid = torch.arange(width, device=block_table.device)[None, :] < used_blocks[:, None]
    # entries past a request's length go to a dump slot at num_pages (no boolean indexing: that would sync)
    pages = torch.where(valid, block_table.to(torch.int64), num_pages)
    used = torch.zeros(num_pages + 1, dtype=torch.int32, device=block_table.device)
    used.scatter_(0, pages.flatten(), 1)
    used = used[:num_pages]
    return torch.where(used > 0, torch.cumsum(used, 0, dtype=torch.int32) - 1, -1).to(torch.int32)


def widened_buffer(workspace: PrefillWorkspace | None, pages: int, num_kv_heads: int, head_dim: int,
                   dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The compact cache [pages, kv_heads, 128, 2 * head_dim], new or the workspace's ``widened_kv`` buffer (a
    server reserves it ahead with this too: see ``serving.plugin.msa_calls.reserve_prefill``)."""
    return empty(workspace, "widened_kv", (pages, num_kv_heads, BLOCK_SIZE, 2 * head_dim), dtype, device)


def max_widened_pages(block_table: torch.Tensor, num_pages: int, max_read_pages: int | None = None) -> int:
    """Host-side bound on the compact cache's pages (no sync): a page per block-table entry, never more than the
    cache holds, and at most ``max_read_pages`` when the caller knows that bound (vLLM's ``total_kv_blocks``: the
    prefills' ceil(seq_len / 128) summed on the host, where the table is as wide as the longest model length)."""
    bound = min(num_pages, block_table.numel())
    if max_read_pages is not None:
        bound = min(bound, max_read_pages)
    return max(1, bound)


def transposed_buffer(workspace: PrefillWorkspace | None, pages: int, num_kv_heads: int, head_dim: int,
                      device: torch.device) -> torch.Tensor:
    """The FP8 step's pages [pages, kv_heads, 128, 2 * head_dim] e4m3 (K rows, then V^T rows), new or the
    workspace's ``fp8_pages`` buffer."""
    return empty(workspace, "fp8_pages", (pages, num_kv_heads, BLOCK_SIZE, 2 * head_dim), FP8_CACHE_DTYPE, device)


def widen_fp8_pages(kv_cache: torch.Tensor, block_table: torch.Tensor, seq_lens: torch.Tensor, v_scale: float,
                    dtype: torch.dtype = torch.bfloat16, workspace: PrefillWorkspace | None = None,
                    max_read_pages: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(``dtype`` cache [pages', kv_heads, 128, 2 * head_dim] of the pages this call reads, block table renumbered
    into it; bf16 for the CUDA kernels, q's dtype in general). K is the fp8 K widened exactly (apply ``k_scale`` to
    the softmax scale); V is ``v_scale`` x the fp8 V. Block-table entries past a request's length are set to 0
    (never read). ``max_read_pages``: an upper bound on the pages the call reads (sizes the compact cache; a bound
    too small leaves pages unwritten, never writes out of bounds)."""
    widened, _, table = widen_and_transpose(kv_cache, block_table, seq_lens, v_scale, dtype, workspace,
                                            max_read_pages, transposed=False)
    return widened, table


class CompactPages(NamedTuple):
    """Where the pages a call reads go in the compact caches (``compact_pages``)."""

    slots: torch.Tensor
    """int32 [cache pages]: compact index of each page the call reads, -1 for the others (``page_slots``)."""
    table: torch.Tensor
    """The block table renumbered into the compact caches (entries past a request's length: 0, never read)."""
    capacity: int
    """Host-side bound on the compact caches' pages (``max_widened_pages``)."""


def compact_pages(block_table: torch.Tensor, seq_lens: torch.Tensor, num_pages: int,
                  max_read_pages: int | None = None) -> CompactPages:
    """The compact numbering of the pages a call reads (no kernel launch beyond a scatter + cumsum, no sync)."""
    slots = page_slots(block_table, seq_lens, num_pages)
    table = slots[block_table.to(torch.int64).clamp(0, num_pages - 1)].clamp_min(0).to(block_table.dtype)
    return CompactPages(slots, table, max_widened_pages(block_table, num_pages, max_read_pages))


def widen_pages(kv_cache: torch.Tensor, pages: CompactPages, v_scale: float, dtype: torch.dtype = torch.bfloat16,
                workspace: PrefillWorkspace | None = None, transposed: bool = False,
                read: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(widened cache, e4m3 transposed pages or None) in ``pages``' numbering, in one pass; ``read`` (int8
    [capacity, kv_heads], ``tile_read_flags``): the transposed pages written only where flagged (None: all)."""
    num_pages, num_kv_heads, block, two_d = kv_cache.shape
    if transposed and two_d != 2 * block:  # V^T's rows (one per head dim) must be a page row long
        raise ValueError(f"transposed pages need head_dim == {block} (the keys of a page), got {two_d // 2}")
    if read is not None and tuple(read.shape) != (pages.capacity, num_kv_heads):
        raise ValueError(f"read flags must be [{pages.capacity}, {num_kv_heads}], got {tuple(read.shape)}")
    widened = widened_buffer(workspace, pages.capacity, num_kv_heads, two_d // 2, dtype, kv_cache.device)
    t_pages = (transposed_buffer(workspace, pages.capacity, num_kv_heads, two_d // 2, kv_cache.device)
               if transposed else None)
    t = t_pages if t_pages is not None else widened  # an unused pointer when not transposed
    _widen_kernel[(num_pages, num_kv_heads)](
        kv_cache, widened, t, pages.slots, read if read is not None else pages.slots, float(v_scale),
        pages.capacity, kv_cache.stride(0), kv_cache.stride(1), kv_cache.stride(2), widened.stride(0),
        widened.stride(1), t.stride(0), t.stride(1), BLOCK=block, HEAD_DIM=two_d // 2, TRANSPOSED=transposed,
        READ=transposed and read is not None, num_warps=4)
    return widened, t_pages


def widen_and_transpose(kv_cache: torch.Tensor, block_table: torch.Tensor, seq_lens: torch.Tensor, v_scale: float,
                        dtype: torch.dtype = torch.bfloat16, workspace: PrefillWorkspace | None = None,
                        max_read_pages: int | None = None, transposed: bool = True,
                        ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """``widen_fp8_pages`` in one pass with (``transposed``) the FP8 step's pages for every page read: (widened
    cache, e4m3 transposed pages or None, renumbered block table); both caches use the same page numbers."""
    pages = compact_pages(block_table, seq_lens, kv_cache.shape[0], max_read_pages)
    widened, t_pages = widen_pages(kv_cache, pages, v_scale, dtype, workspace, transposed)
    return widened, t_pages, pages.table
