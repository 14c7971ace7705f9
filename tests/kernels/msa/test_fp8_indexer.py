"""The Triton indexer on fp8 (float8_e4m3fn) index q and/or index-key cache, as vLLM's `indexer_kv_dtype="fp8"`
serves it (v13r): both e4m3 -> FP8 MMA, one e4m3 -> widened to the other dtype. Checked against the fp32 reference
scoring the SAME e4m3 values (exact products), with the selection contract (valid ids first, -1 after, the local
block forced, ties -> lower id). CPU under TRITON_INTERPRET=1 (small shapes; the wide operand is fp32 there), bf16
at d = 128 on a GPU; the `gpu` test runs M3's shapes."""
from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():  # must be set before the kernels' @triton.jit run
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

from kernels.msa import MSAShapeError, index_block_scores, msa_index_topk  # noqa: E402
from kernels.msa.indexer import msa_index_topk_triton  # noqa: E402
from kernels.msa.inputs import make_case  # noqa: E402
from kernels.msa.reference import decode_query_start_loc, token_positions  # noqa: E402
from tests.kernels.msa.checks import DEVICE, DTYPE, GPU, HEAD_DIM, assert_selection_equivalent  # noqa: E402

E4M3 = torch.float8_e4m3fn
SCORE_TOL = 1e-2 if GPU else 1e-4
"""Near-tie gap within which the kernel may pick another block than the reference (fp32 accumulation order)."""
FP8_MMA_NEAR_TIES = 1 / 50
"""Share of rows that may be near-ties with an e4m3 x e4m3 wgmma: Hopper's FP8 MMA accumulates with fewer bits than
fp32 (H200, v13r: 0.5 % of rows at 8K, 1.0 % at 32K and 128K, each within SCORE_TOL; bf16 MMAs: none)."""
CASES = [  # (seq_lens, q_lens, heads, kv_heads)
    ([300], [300], 8, 2),  # fewer than 16 blocks: everything visible is selected
    ([2200, 129], [40, 129], 8, 2),  # ragged; chunked prefill with 2160 tokens of context
    ([2100, 77, 1500], [3, 77, 200], 16, 4),  # four index heads as in M3
]


def _inputs(case, q_fp8: bool, k_fp8: bool) -> tuple[torch.Tensor, torch.Tensor]:
    q = case.index_q.to(E4M3) if q_fp8 else case.index_q
    k = case.index_k_cache.to(E4M3) if k_fp8 else case.index_k_cache
    return q, k


def _check(got, q, k, table, qsl, seq_lens, init_blocks=0) -> None:
    c = dict(index_q=q.cpu(), index_k_cache=k.cpu(), block_table=table.cpu(), query_start_loc=qsl.cpu(),
             seq_lens=seq_lens.cpu())
    want = msa_index_topk(**c, init_blocks=init_blocks)
    share = FP8_MMA_NEAR_TIES if GPU and q.dtype == k.dtype == E4M3 else 1 / 500
    assert_selection_equivalent(got, want, index_block_scores(**c), tol=SCORE_TOL, max_near_tie_share=share)
    nb = (want >= 0).sum(-1)  # the local block (the last visible one) is always among the picks
    _, pos = token_positions(qsl.cpu(), seq_lens.cpu())
    local = (pos // 128)[None, :, None].expand_as(got.cpu()).long()
    assert bool(((got.cpu().long() == local).any(-1) | (nb == 0)).all())


def test_reference_scores_e4m3_exactly():
    """The reference widens e4m3 to fp32 (exact): its scores equal those of the widened copies, bit for bit."""
    case = make_case([700], [9], num_heads=4, num_kv_heads=2, head_dim=32, dtype=torch.float32, device="cpu", seed=60)
    q, k = _inputs(case, True, True)
    meta = (case.block_table, case.query_start_loc, case.seq_lens)
    assert torch.equal(index_block_scores(q, k, *meta), index_block_scores(q.float(), k.float(), *meta))


@pytest.mark.parametrize("q_fp8,k_fp8", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("seq_lens,q_lens,heads,kv_heads", CASES)
def test_fp8_indexer_prefill(seq_lens, q_lens, heads, kv_heads, q_fp8, k_fp8):
    case = make_case(seq_lens, q_lens, num_heads=heads, num_kv_heads=kv_heads, head_dim=HEAD_DIM, dtype=DTYPE,
                     device=DEVICE, seed=61)
    q, k = _inputs(case, q_fp8, k_fp8)
    out = torch.full((kv_heads, q.shape[0], 16), 7, dtype=torch.int32, device=DEVICE)  # poisoned: all written
    msa_index_topk_triton(q, k, case.block_table, case.query_start_loc, case.seq_lens, out=out)
    _check(out, q, k, case.block_table, case.query_start_loc, case.seq_lens)


@pytest.mark.parametrize("init_blocks", [0, 1])
def test_fp8_indexer_decode_with_mtp(init_blocks):
    """Decode rows (1 + 2 MTP drafts per request) on an e4m3 cache and e4m3 q, with and without an init block."""
    case = make_case([2500, 1900], [3, 3], num_heads=8, num_kv_heads=2, head_dim=HEAD_DIM, dtype=DTYPE,
                     device=DEVICE, seed=62)
    q, k = _inputs(case, True, True)
    qsl = decode_query_start_loc(2, 3, DEVICE)
    got = msa_index_topk_triton(q, k, case.block_table, qsl, case.seq_lens, init_blocks=init_blocks, max_query_len=3)
    _check(got, q, k, case.block_table, qsl, case.seq_lens, init_blocks)
    assert bool((got[..., 0] == 0).all()) if init_blocks else True  # the forced init block ranks first


def test_fp8_selection_differs_only_by_quantisation():
    """fp8 selection vs the bf16/fp32 selection of the unquantised inputs: not required equal (e4m3 has 3 mantissa
    bits), but the local block and most blocks stay; a kernel that ignored the fp8 values would fail this."""
    case = make_case([2400], [2400], num_heads=8, num_kv_heads=2, head_dim=HEAD_DIM, dtype=DTYPE, device=DEVICE,
                     seed=63)
    args = (case.block_table, case.query_start_loc, case.seq_lens)
    wide = msa_index_topk_triton(case.index_q, case.index_k_cache, *args).cpu()
    fp8 = msa_index_topk_triton(*_inputs(case, True, True), *args).cpu()
    shared = ((wide[..., :, None] == fp8[..., None, :]) & (wide[..., :, None] >= 0)).sum()
    overlap = float(shared) / float((wide >= 0).sum())
    assert 0.5 < overlap < 1.0, overlap


@pytest.mark.parametrize("q_dtype,k_dtype", [(torch.bfloat16, torch.float32), (torch.float8_e5m2, E4M3),
                                             (E4M3, torch.int8)])
def test_unsupported_dtypes_fail_in_one_line(q_dtype, k_dtype):
    case = make_case([300], [4], num_heads=4, num_kv_heads=2, head_dim=HEAD_DIM, dtype=torch.float32, device=DEVICE,
                     seed=64)
    q = case.index_q.to(q_dtype)
    k = case.index_k_cache.to(k_dtype)
    with pytest.raises(MSAShapeError) as err:
        msa_index_topk_triton(q, k, case.block_table, case.query_start_loc, case.seq_lens)
    assert "\n" not in str(err.value) and "float8_e4m3fn" in str(err.value)


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU")
def test_fp8_indexer_m3_shapes():
    """M3: 4 index heads, d = 128, an 8K prefill on an e4m3 cache with e4m3 q, against the fp32 reference on the
    same values over the last 256 tokens (every row equal up to near-ties)."""
    n, tail = 8192, 256
    case = make_case([n], [n], 64, 4, 128, torch.bfloat16, "cuda", seed=65)
    q, k = _inputs(case, True, True)
    got = msa_index_topk_triton(q, k, case.block_table, case.query_start_loc, case.seq_lens, max_query_len=n)
    qsl = torch.tensor([0, tail], dtype=torch.int32)
    _check(got[:, -tail:], q[-tail:], k, case.block_table, qsl, case.seq_lens)
