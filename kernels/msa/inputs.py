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
    if len(seq_lens) != len(q_lens) or any(ql > sl for ql, sl in zip(q_lens, seq_lens)):
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
