"""The Triton MSA kernels against the fp32 reference: on CPU under TRITON_INTERPRET=1 (small shapes, fp32
inputs: the 3.9 interpreter computes bf16 tl.dot wrongly), on a GPU when one is present (bf16).

Shapes cover ragged batches, lengths that are not a multiple of 128, fewer than 16 blocks, chunked prefill
with context, decode with 1 and 3 (MTP) queries per request, and an init block."""
from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():  # must be set before the kernels' @triton.jit run
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

from kernels.msa import index_block_scores, msa_index_topk, sparse_attention, sparse_decode  # noqa: E402
from kernels.msa.decode import sparse_decode_triton  # noqa: E402
from kernels.msa.indexer import msa_index_topk_triton  # noqa: E402
from kernels.msa.inputs import make_case  # noqa: E402
from kernels.msa.prefill import sparse_attention_triton  # noqa: E402
from tests.kernels.msa.checks import DEVICE, DTYPE, GPU, HEAD_DIM, TOL, assert_selection_equivalent, rel_err  # noqa: E402

PREFILL = [  # (seq_lens, q_lens, heads, kv_heads)
    ([300], [300], 8, 2),  # 3 blocks only, last one partial
    ([2200, 129], [40, 129], 8, 2),  # ragged; chunked prefill with 2160 tokens of context
    ([2100, 77, 1500], [3, 77, 200], 16, 1),  # 16 query heads per KV head (M3's group)
]


def _case(seq_lens, q_lens, heads, kv_heads, seed):
    return make_case(seq_lens, q_lens, num_heads=heads, num_kv_heads=kv_heads, head_dim=HEAD_DIM,
                     dtype=DTYPE, device=DEVICE, seed=seed)


def _cpu(case):
    return {k: getattr(case, k).cpu() for k in ("index_q", "index_k_cache", "block_table", "query_start_loc",
                                                "seq_lens")}


@pytest.mark.parametrize("seq_lens,q_lens,heads,kv_heads", PREFILL)
@pytest.mark.parametrize("init_blocks", [0, 1])
def test_indexer(seq_lens, q_lens, heads, kv_heads, init_blocks):
    case = _case(seq_lens, q_lens, heads, kv_heads, seed=11)
    got = msa_index_topk_triton(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc,
                                case.seq_lens, init_blocks=init_blocks)
    c = _cpu(case)
    want = msa_index_topk(**c, init_blocks=init_blocks)
    scores = index_block_scores(**c)
    assert_selection_equivalent(got, want, scores, tol=1e-2 if GPU else 1e-4)


@pytest.mark.parametrize("seq_lens,q_lens,heads,kv_heads", PREFILL)
def test_prefill_attention(seq_lens, q_lens, heads, kv_heads):
    case = _case(seq_lens, q_lens, heads, kv_heads, seed=12)
    c = _cpu(case)
    sel = msa_index_topk(**c)
    out = torch.full_like(case.q, float("nan"))  # poisoned: every element must be written
    sparse_attention_triton(case.q, case.kv_cache, sel.to(DEVICE), case.block_table, case.query_start_loc,
                            case.seq_lens, out=out)
    want = sparse_attention(case.q.cpu(), case.kv_cache.cpu(), sel, c["block_table"], c["query_start_loc"],
                            c["seq_lens"])
    assert rel_err(out, want) < TOL


@pytest.mark.parametrize("seq_lens,query_len,splits", [([2200, 129, 5000], 1, None), ([2500, 300], 3, 4),
                                                       ([700], 2, 16)])
def test_decode(seq_lens, query_len, splits):
    case = _case(seq_lens, [query_len] * len(seq_lens), 16, 2, seed=13)
    c = _cpu(case)
    sel = msa_index_topk(**c)
    out = torch.full_like(case.q, float("nan"))
    sparse_decode_triton(case.q, case.kv_cache, sel.to(DEVICE), case.block_table, case.seq_lens, query_len,
                         out=out, num_splits=splits)
    want = sparse_decode(case.q.cpu(), case.kv_cache.cpu(), sel, c["block_table"], c["seq_lens"], query_len)
    assert rel_err(out, want) < TOL


def test_selection_with_holes_is_handled():
    """-1 entries in the middle of a row (another implementation's order) must be skipped, not read."""
    case = _case([2000], [20], 8, 1, seed=14)
    c = _cpu(case)
    sel = msa_index_topk(**c)
    holed = sel.clone()
    holed[..., 3] = -1
    holed = holed[..., torch.randperm(16)].contiguous()
    want = sparse_attention(case.q.cpu(), case.kv_cache.cpu(), holed, c["block_table"], c["query_start_loc"],
                            c["seq_lens"])
    got = sparse_attention_triton(case.q, case.kv_cache, holed.to(DEVICE), case.block_table, case.query_start_loc,
                                  case.seq_lens)
    assert rel_err(got, want) < TOL


@pytest.mark.parametrize("q_dtype, kv_dtype", [(torch.bfloat16, torch.float32), (torch.float32, torch.float16),
                                               (torch.int8, torch.int8)])
def test_mixed_dtypes_are_refused(q_dtype, kv_dtype):
    """A cache of another dtype than q (fp8 aside) is refused in one line by prefill and decode (a bf16 q on an fp32
    cache used to run and return values off by ~1e9)."""
    from kernels.msa import MSAShapeError

    case = make_case([300], [40], num_heads=8, num_kv_heads=2, head_dim=32, dtype=torch.float32)
    q, kv = case.q.to(q_dtype), case.kv_cache.to(kv_dtype)
    sel = torch.zeros((2, 40, 16), dtype=torch.int32)
    with pytest.raises(MSAShapeError, match="dtypes .* not supported"):
        sparse_attention_triton(q, kv, sel, case.block_table, case.query_start_loc, case.seq_lens)
    with pytest.raises(MSAShapeError, match="dtypes .* not supported"):
        sparse_decode_triton(q[:1], kv, sel[:, :1].contiguous(), case.block_table, case.seq_lens)
