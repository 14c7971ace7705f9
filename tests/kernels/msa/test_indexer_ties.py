"""The indexer's running top-k on exact ties (v15x: fp32 scores + int32 ids, `s > thr` as the insert test).

Integer-valued q and keys make every block score an exact integer in fp32 (any accumulation order), so ties are
exact and the output must equal, id for id and in order, the v14 key order: forced blocks (+inf) first, then score
descending, equal scores -> lower block id, -1 padding. Covers few distinct scores, all-equal scores, top_k 8 / 16
/ 32, init blocks, bf16- and e4m3-representable values. CPU under TRITON_INTERPRET=1; bf16 / e4m3 on a GPU."""
from __future__ import annotations

import math
import os

import torch

if not torch.cuda.is_available():  # must be set before the kernels' @triton.jit run
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

from kernels.msa import index_block_scores  # noqa: E402
from kernels.msa.indexer import msa_index_topk_triton  # noqa: E402
from kernels.msa.inputs import make_case  # noqa: E402
from kernels.msa.reference import BLOCK_SIZE, token_positions  # noqa: E402
from tests.kernels.msa.checks import DEVICE, GPU, HEAD_DIM  # noqa: E402

E4M3 = torch.float8_e4m3fn


def ranked_selection(scores: torch.Tensor, qsl: torch.Tensor, seq_lens: torch.Tensor, top_k: int, init_blocks: int,
                     local_blocks: int = 1) -> torch.Tensor:
    """The kernel's exact output from exact block scores: top_k by (forced, score desc, id asc), in that order."""
    heads, tokens, max_blocks = scores.shape
    _, pos = token_positions(qsl, seq_lens)
    nb = (pos // BLOCK_SIZE + 1)[:, None]
    ids = torch.arange(max_blocks)[None, :]
    visible = ids < nb
    forced = visible & ((ids < init_blocks) | (ids >= nb - local_blocks))
    keys = scores.masked_fill(forced[None], float("inf"))
    order = torch.sort(-keys, dim=-1, stable=True).indices  # stable: equal scores -> lower id
    rank_ok = torch.gather(visible[None].expand(heads, -1, -1), -1, order)
    out = torch.where(rank_ok, order, -1)[..., :top_k]
    if out.shape[-1] < top_k:
        out = torch.cat([out, out.new_full((heads, tokens, top_k - out.shape[-1]), -1)], -1)
    return out.to(torch.int32)


def _integer_case(seq_lens, q_lens, kv_heads, levels, seed, dtype):
    """Random case with q and keys drawn from {-levels..levels} (exact in bf16, e4m3 and fp32)."""
    case = make_case(seq_lens, q_lens, num_heads=kv_heads, num_kv_heads=kv_heads, head_dim=HEAD_DIM,
                     dtype=torch.float32, device="cpu", seed=seed)
    gen = torch.Generator().manual_seed(seed)
    q = torch.randint(-levels, levels + 1, case.index_q.shape, generator=gen).float()
    k = torch.randint(-levels, levels + 1, case.index_k_cache.shape, generator=gen).float()
    return q.to(dtype), k.to(dtype), case


def _run(q, k, case, top_k, init_blocks):
    dev = [t.to(DEVICE) for t in (q, k, case.block_table, case.query_start_loc, case.seq_lens)]
    out = torch.full((q.shape[1], q.shape[0], top_k), 7, dtype=torch.int32, device=DEVICE)  # poisoned
    msa_index_topk_triton(*dev, top_k=top_k, init_blocks=init_blocks, out=out)
    return out.cpu()


WIDE = torch.bfloat16 if GPU else torch.float32


@pytest.mark.parametrize("top_k", [8, 16, 32])
@pytest.mark.parametrize("init_blocks", [0, 2])
@pytest.mark.parametrize("levels", [1, 0])  # 1: few distinct scores (many ties); 0: q = k = 0, every score equal
def test_exact_ties_ranked(top_k, init_blocks, levels):
    seq_lens, q_lens = [3000, 400], [37, 300]
    q, k, case = _integer_case(seq_lens, q_lens, 2, levels, seed=90 + top_k, dtype=WIDE)
    got = _run(q, k, case, top_k, init_blocks)
    meta = (case.block_table, case.query_start_loc, case.seq_lens)
    scores = index_block_scores(q.float(), k.float(), *meta)
    assert bool((scores == scores.round()).all() | scores.isinf().all())
    want = ranked_selection(scores, case.query_start_loc, case.seq_lens, top_k, init_blocks)
    assert torch.equal(got, want), (got != want).nonzero()[:5]
    if levels == 0:  # every score 0: the forced blocks, then the lowest ids
        nb = math.ceil(seq_lens[0] / BLOCK_SIZE)
        assert got[0, 36, :top_k - 1 - init_blocks].tolist()[0] == (0 if init_blocks else nb - 1)


@pytest.mark.skipif(not GPU, reason="e4m3 x e4m3 MMA: GPU only (the CPU path runs it through the interpreter's fp32)")
@pytest.mark.parametrize("top_k", [8, 16])
def test_exact_ties_ranked_e4m3(top_k):
    q, k, case = _integer_case([9000], [9000], 4, 2, seed=97, dtype=E4M3)
    got = _run(q, k, case, top_k, 0)
    scores = index_block_scores(q.float(), k.float(), case.block_table, case.query_start_loc, case.seq_lens)
    want = ranked_selection(scores, case.query_start_loc, case.seq_lens, top_k, 0)
    assert torch.equal(got, want)
