"""The fp32 reference against a plain per-token loop (a second, independent formulation)."""
from __future__ import annotations

import math

import pytest
import torch

from kernels.msa import (
    BLOCK_SIZE,
    MSAShapeError,
    msa_index_topk,
    sparse_attention,
    sparse_decode,
    token_positions,
)
from kernels.msa.inputs import make_case


def _loop_index(case, top_k=16, init_blocks=0, local_blocks=1):
    """Per token: contiguous keys, block max, python sort. Returns a list of sets per (head, token)."""
    req, pos = token_positions(case.query_start_loc, case.seq_lens)
    result = {}
    for t in range(case.q.shape[0]):
        r, p = int(req[t]), int(pos[t])
        nb = p // BLOCK_SIZE + 1
        pages = case.block_table[r, :nb].long()
        keys = case.index_k_cache[pages].float().reshape(-1, case.index_k_cache.shape[-1])[: p + 1]
        for h in range(case.index_q.shape[1]):
            s = keys @ case.index_q[t, h].float()
            blk = [float(s[b * BLOCK_SIZE:(b + 1) * BLOCK_SIZE].max()) for b in range(nb)]
            if nb <= top_k:
                chosen = set(range(nb))
            else:
                forced = set(range(min(init_blocks, nb))) | set(range(nb - local_blocks, nb))
                rest = sorted((b for b in range(nb) if b not in forced), key=lambda b: (-blk[b], b))
                chosen = forced | set(rest[: top_k - len(forced)])
            result[(h, t)] = chosen
    return result


def _loop_attention(case, selection):
    req, pos = token_positions(case.query_start_loc, case.seq_lens)
    num_tokens, num_heads, d = case.q.shape
    hkv = case.kv_cache.shape[1]
    out = torch.zeros(num_tokens, num_heads, d)
    for t in range(num_tokens):
        r, p = int(req[t]), int(pos[t])
        for h in range(num_heads):
            g = h // (num_heads // hkv)
            ks, vs = [], []
            for b in selection[g, t].tolist():
                if b < 0:
                    break
                page = int(case.block_table[r, b])
                n = min(BLOCK_SIZE, p + 1 - b * BLOCK_SIZE)
                ks.append(case.kv_cache[page, g, :n, :d].float())
                vs.append(case.kv_cache[page, g, :n, d:].float())
            k, v = torch.cat(ks), torch.cat(vs)
            w = torch.softmax(k @ case.q[t, h].float() / math.sqrt(d), 0)
            out[t, h] = w @ v
    return out


@pytest.mark.parametrize("seq_lens,q_lens", [([300], [300]), ([2200, 129], [40, 129]), ([2100], [3])])
def test_indexer_matches_loop(seq_lens, q_lens):
    case = make_case(seq_lens, q_lens, num_heads=4, num_kv_heads=2, head_dim=32, dtype=torch.float32, seed=1)
    sel = msa_index_topk(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc, case.seq_lens)
    want = _loop_index(case)
    _, pos = token_positions(case.query_start_loc, case.seq_lens)
    for (h, t), chosen in want.items():
        row = sel[h, t].tolist()
        valid = [b for b in row if b >= 0]
        assert row[: len(valid)] == valid, "valid ids must come first"
        assert set(valid) == chosen
        assert int(pos[t]) // BLOCK_SIZE in valid, "local block always selected"


def test_init_block_forced():
    case = make_case([2500], [5], num_heads=2, num_kv_heads=1, head_dim=16, dtype=torch.float32, seed=2)
    sel = msa_index_topk(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc,
                         case.seq_lens, init_blocks=1)
    want = _loop_index(case, init_blocks=1)
    for (h, t), chosen in want.items():
        assert set(sel[h, t].tolist()) == chosen and 0 in chosen


@pytest.mark.parametrize("seq_lens,q_lens", [([260], [260]), ([2200, 77], [20, 77])])
def test_attention_matches_loop(seq_lens, q_lens):
    case = make_case(seq_lens, q_lens, num_heads=4, num_kv_heads=2, head_dim=32, dtype=torch.float32, seed=3)
    sel = msa_index_topk(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc, case.seq_lens)
    got = sparse_attention(case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens)
    torch.testing.assert_close(got, _loop_attention(case, sel), rtol=1e-4, atol=1e-5)


def test_decode_is_bottom_right_prefill():
    case = make_case([1000, 3000], [2, 2], num_heads=4, num_kv_heads=1, head_dim=32, dtype=torch.float32, seed=4)
    sel = msa_index_topk(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc, case.seq_lens)
    dec = sparse_decode(case.q, case.kv_cache, sel, case.block_table, case.seq_lens, decode_query_len=2)
    torch.testing.assert_close(dec, _loop_attention(case, sel), rtol=1e-4, atol=1e-5)


def test_bad_shapes_report_every_problem():
    case = make_case([200], [200], num_heads=4, num_kv_heads=2, head_dim=32, dtype=torch.float32)
    with pytest.raises(MSAShapeError, match="kv_cache last dim.*selection must be"):
        sparse_attention(case.q, case.kv_cache[..., :32], torch.zeros(1, 2, 3, dtype=torch.int32),
                         case.block_table, case.query_start_loc, case.seq_lens)
