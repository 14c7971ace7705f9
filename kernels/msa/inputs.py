"""Random MSA inputs in vLLM's layouts, shared by the tests and the benchmark.

Pages are handed out in a shuffled order so that a kernel which ignores the block table fails the checks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from kernels.msa.reference import BLOCK_SIZE


@dataclass(frozen=True)
class MSACase:
    """One batch: paged caches, queries and metadata. ``q_lens[i] <= seq_lens[i]`` (chunked prefill = context)."""

    q: torch.Tensor
    """[num_tokens, num_heads, head_dim]"""
    index_q: torch.Tensor
    """[num_tokens, num_kv_heads, head_dim]"""
    kv_cache: torch.Tensor
    """[num_pages, num_kv_heads, 128, 2 * head_dim]"""
    index_k_cache: torch.Tensor
    """[num_pages, 128, head_dim]"""
    block_table: torch.Tensor
    """[num_requests, max_blocks] int32"""
    query_start_loc: torch.Tensor
    """[num_requests + 1] int32"""
    seq_lens: torch.Tensor
    """[num_requests] int32"""

    @property
    def max_query_len(self) -> int:
        return int((self.query_start_loc[1:] - self.query_start_loc[:-1]).max())

    @property
    def max_seq_len(self) -> int:
        return int(self.seq_lens.max())


def make_case(
    seq_lens: list[int],
    q_lens: list[int],
    num_heads: int = 64,
    num_kv_heads: int = 4,
    head_dim: int = 128,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> MSACase:
    """Random case; each request's last ``q_lens[i]`` positions are its queries."""
    if len(seq_lens) != len(q_lens) or any(ql > sl for ql, sl in zip(q_lens, seq_lens, strict=True)):
        raise ValueError(f"need one q_len <= seq_len per request: seq_lens={seq_lens}, q_lens={q_lens}")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    # Large tensors are drawn where they live (a CPU draw of 1e9 values then a copy takes many seconds).
    dev_gen = torch.Generator(device=device).manual_seed(seed)
    blocks = [math.ceil(s / BLOCK_SIZE) for s in seq_lens]
    num_pages = sum(blocks) + 1  # one spare page that no request owns
    perm = torch.randperm(num_pages, generator=gen)[: sum(blocks)].to(torch.int32)
    table = torch.zeros((len(seq_lens), max(blocks)), dtype=torch.int32)
    offset = 0
    for r, nb in enumerate(blocks):
        table[r, :nb] = perm[offset:offset + nb]
        offset += nb
    num_tokens = sum(q_lens)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=dev_gen, dtype=torch.float32, device=device).to(dtype)

    qsl = torch.zeros(len(q_lens) + 1, dtype=torch.int32)
    qsl[1:] = torch.cumsum(torch.tensor(q_lens), 0)
    return MSACase(
        q=rand(num_tokens, num_heads, head_dim),
        index_q=rand(num_tokens, num_kv_heads, head_dim),
        kv_cache=rand(num_pages, num_kv_heads, BLOCK_SIZE, 2 * head_dim),
        index_k_cache=rand(num_pages, BLOCK_SIZE, head_dim),
        block_table=table.to(device),
        query_start_loc=qsl.to(device),
        seq_lens=torch.tensor(seq_lens, dtype=torch.int32, device=device),
    )


def peaked_case(case: MSACase) -> MSACase:
    """``case`` shaped like trained attention rather than unit normals (v18y): q x 4 and two outlier key channels
    (5 and 77, x 10, as LLMs' "massive activations") spread a token's scores ~6x wider, so a few keys take most of
    the weight; values x 64; and the last request's last key made 16x longer with the last token's queries of KV
    head 0 aimed at it (score ~200 there, the others ~N(0, 6): every other weight ~2^-260, so those heads' output
    is that key's value, ``dominated_value``)."""
    d = case.q.shape[-1]
    kv = case.kv_cache.clone()
    kv[..., [5, 77]] *= 10
    kv[..., d:] *= 64
    page, slot = _last_key(case)
    kv[page, 0, slot, :d] *= 16
    key = kv[page, 0, slot, :d].float()
    q = case.q * 4
    q[-1, :q.shape[1] // kv.shape[1]] = (8 * key / key.norm()).to(q.dtype)
    return MSACase(q.contiguous(), case.index_q, kv, case.index_k_cache, case.block_table, case.query_start_loc,
                   case.seq_lens)


def dominated_value(case: MSACase) -> torch.Tensor:
    """The value row (fp32, CPU) a ``peaked_case``'s last token returns on KV head 0's query heads."""
    page, slot = _last_key(case)
    return case.kv_cache[page, 0, slot, case.q.shape[-1]:].float().cpu()


def _last_key(case: MSACase) -> tuple[int, int]:
    """(page, slot) of the last request's last key."""
    last = int(case.seq_lens[-1]) - 1
    return int(case.block_table[-1, last // BLOCK_SIZE]), last % BLOCK_SIZE


def local_selection(
    query_start_loc: torch.Tensor,
    seq_lens: torch.Tensor,
    num_kv_heads: int,
    shared: float,
    window: int = 64,
    top_k: int = 16,
    seed: int = 0,
    chunk_tokens: int = 0,
) -> torch.Tensor:
    """Synthetic selections with locality, in vLLM's contract: [num_kv_heads, num_tokens, top_k] int32.

    Slot 0 is the token's local block (what vLLM's Hopper kernel assumes). A token with nb <= top_k visible
    blocks selects all of them. Otherwise each of its top_k - 1 other slots holds, with probability ``shared``,
    the same slot of its ``window``-token window's shared set (15 random full blocks visible to the window's first
    token), else a random full block outside that set; blocks of one token are distinct. Built where
    ``seq_lens`` lives, ``chunk_tokens`` tokens at a time (a multiple of ``window``; 0 = sized to the context).
    """
    dev = seq_lens.device
    gen = torch.Generator(device=dev).manual_seed(seed)
    qsl = query_start_loc.tolist()
    lens = seq_lens.tolist()
    out = torch.full((num_kv_heads, qsl[-1], top_k), -1, dtype=torch.int32, device=dev)
    other = top_k - 1
    for r, seq_len in enumerate(lens):
        q_len = qsl[r + 1] - qsl[r]
        # ~2^25 scores per chunk (a few hundred MB), whole windows
        chunk_tokens = chunk_tokens or max(window, (2 ** 25 // (num_kv_heads * (seq_len // BLOCK_SIZE + 1))) // window * window)
        for c0 in range(0, q_len, chunk_tokens):
            c1 = min(q_len, c0 + chunk_tokens)
            pos = torch.arange(seq_len - q_len + c0, seq_len - q_len + c1, device=dev)
            nb = pos // BLOCK_SIZE + 1
            width = max(int(nb[-1]), top_k)
            blocks = torch.arange(width, device=dev)
            full = blocks[None, :] < (nb - 1)[:, None]  # [n, width]: full blocks visible to each token
            score = torch.rand((num_kv_heads, pos.numel(), width), generator=gen, device=dev)
            score = torch.where(full[None], score, -1.0)
            first = (torch.arange(c0, c1, device=dev) // window * window).clamp(min=c0) - c0  # window's first row
            win_ok = (nb[first] - 1 >= other)[None, :, None]
            win_set = score[:, first].topk(other, dim=-1).indices  # [H, n, 15] shared set of the window
            score_own = score.scatter(2, win_set, torch.where(win_ok, -1.0, score.gather(2, win_set)))
            own_val, own = score_own.topk(min(other, width), dim=-1)
            if own.shape[-1] < other:  # fewer blocks than slots (short sequences): pad, these rows are overridden
                own = torch.nn.functional.pad(own, (0, other - own.shape[-1]))
                own_val = torch.nn.functional.pad(own_val, (0, other - own_val.shape[-1]), value=-1.0)
            take = win_ok & ((torch.rand(own.shape, generator=gen, device=dev) < shared) | (own_val < 0))
            picks = torch.where(take, win_set, own)
            sel = torch.cat([(nb - 1).expand(num_kv_heads, -1)[..., None], picks], dim=-1)
            # Tokens with nb <= top_k take every visible block: local first, then 0 .. nb - 2.
            few = nb <= top_k
            slots = torch.arange(top_k, device=dev)
            all_blocks = torch.where(slots[None, :] == 0, (nb - 1)[:, None], slots[None, :] - 1)
            all_blocks = torch.where(slots[None, :] < nb[:, None], all_blocks, -1)
            sel = torch.where(few[None, :, None], all_blocks[None], sel)
            out[:, qsl[r] + c0:qsl[r] + c1] = sel.to(torch.int32)
    return out


FP8_E4M3_MAX = 448.0
"""Largest finite float8 e4m3 (``torch.float8_e4m3fn``) value."""


def quantize_kv_fp8(kv_cache: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """(fp8 e4m3 cache, k_scale, v_scale): one scale per tensor half (K, V), amax / 448, as vLLM's per-tensor
    ``k_scale`` / ``v_scale``; the cache keeps vLLM's layout [pages, kv_heads, 128, 2 * head_dim]."""
    d = kv_cache.shape[-1] // 2
    k_scale = max(float(kv_cache[..., :d].abs().max()), 1e-12) / FP8_E4M3_MAX
    v_scale = max(float(kv_cache[..., d:].abs().max()), 1e-12) / FP8_E4M3_MAX
    scale = torch.cat([torch.full((d,), k_scale), torch.full((d,), v_scale)]).to(kv_cache.device)
    return (kv_cache.float() / scale).to(torch.float8_e4m3fn), k_scale, v_scale


def dequantize_kv_fp8(kv_fp8: torch.Tensor, k_scale: float, v_scale: float) -> torch.Tensor:
    """fp32 cache the fp8 one stands for (what the kernels compute with): the reference's input."""
    d = kv_fp8.shape[-1] // 2
    out = kv_fp8.float()
    out[..., :d] *= k_scale
    out[..., d:] *= v_scale
    return out
