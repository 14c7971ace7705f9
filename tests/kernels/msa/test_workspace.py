"""v14u: the prefill's per-call buffers from a reusable ``PrefillWorkspace`` give the same output bit for bit as fresh
allocations, allocate nothing once warm, and refuse to grow when locked; on CPU under TRITON_INTERPRET=1 (small
shapes, fp32), and at M3 shapes on a GPU (the CUDA steps, a CUDA-graph replay)."""
from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():  # must be set before the kernels' @triton.jit run
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

from kernels.msa.inputs import local_selection, make_case  # noqa: E402
from kernels.msa.prefill import sparse_attention_triton  # noqa: E402
from kernels.msa.workspace import PrefillWorkspace, WorkspaceGrowthError  # noqa: E402
from tests.kernels.msa.checks import DEVICE, DTYPE, GPU, HEAD_DIM, shuffled_slots  # noqa: E402

TILE = 8 if GPU else 2


def _poison(ws: PrefillWorkspace) -> None:
    """Every byte 0xFF (NaN in float buffers, -1 in int ones): a value the prefill read without writing it first
    would show in the output."""
    for name in list(ws._buffers):
        ws._buffers[name].fill_(0xFF)


def _selection(case, shared: float, seed: int) -> torch.Tensor:  # noqa: ANN001 - a kernels.msa.inputs case
    sel = local_selection(case.query_start_loc.cpu(), case.seq_lens.cpu(), case.kv_cache.shape[1], shared, window=8,
                          seed=seed)
    sel = shuffled_slots(sel, seed + 1)
    sel[0, 7, 2] = sel[1, 30, 0] = -1  # holes in the middle of rows
    return sel.contiguous().to(DEVICE)


@pytest.mark.parametrize("knobs", [
    {"min_share": 2, "min_shared_pct": 0, "fuse_merge": False},  # adaptive, carrier parts in the partials
    {"min_share": 2, "min_shared_pct": 0, "fuse_merge": False, "partial_dtype": torch.int8},  # int8 + bf16 side buffer
    {"min_share": 2, "min_shared_pct": 0, "window": 64},  # token windows: the torch CSR build beside the split
    {"max_union": 0},  # KV-outer only
], ids=["adaptive", "int8-side-buffer", "window", "kv-outer-only"])
def test_workspace_output_is_bit_identical(knobs):
    """Chunked prefill with context (two requests, a tile spanning both), shuffled slots, -1 holes: the same output
    with fresh buffers and with a workspace holding a previous call's (poisoned) leftovers; no growth on the
    second call of the same shape."""
    case = make_case([5000, 3000], [41, 120], num_heads=16, num_kv_heads=2, head_dim=HEAD_DIM, dtype=DTYPE,
                     device=DEVICE, seed=26)
    args = (case.q, case.kv_cache, _selection(case, 0.9, 13), case.block_table, case.query_start_loc, case.seq_lens)
    knobs = {"union_tile": TILE, **knobs}
    want = sparse_attention_triton(*args, **knobs)
    ws = PrefillWorkspace()
    sparse_attention_triton(case.q, case.kv_cache, _selection(case, 0.3, 17), *args[3:], workspace=ws, **knobs)
    grows = ws.grows
    assert grows > 0 and ws.nbytes > 0
    _poison(ws)
    got = torch.full_like(case.q, float("nan"))
    sparse_attention_triton(*args, out=got, workspace=ws, **knobs)
    assert ws.grows == grows, "a warm workspace must not allocate"
    assert torch.equal(got, want)


def test_workspace_grows_only_and_locks():
    """A smaller call reuses the buffers; ``reserve`` sizes the partials for a token budget ahead; a locked
    workspace refuses to grow with a one-line error (what CUDA-graph capture relies on)."""
    big = make_case([600], [300], num_heads=16, num_kv_heads=2, head_dim=HEAD_DIM, dtype=DTYPE, device=DEVICE,
                    seed=3)
    small = make_case([300], [100], num_heads=16, num_kv_heads=2, head_dim=HEAD_DIM, dtype=DTYPE, device=DEVICE,
                      seed=4)
    ws = PrefillWorkspace()
    ws.reserve(300, num_kv_heads=2, group=8, head_dim=HEAD_DIM, top_k=16, partial_dtype=DTYPE, device=big.q.device)
    assert ws.grows == 2 and ws.nbytes >= 2 * 300 * 16 * 8 * (HEAD_DIM * DTYPE.itemsize + 4)  # partial_o, partial_lse
    grows = []
    for case, seed in ((big, 5), (small, 6)):
        sel = local_selection(case.query_start_loc, case.seq_lens, 2, 0.5, window=8, seed=seed).to(DEVICE)
        sparse_attention_triton(case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens,
                                union_tile=TILE, workspace=ws)
        grows.append(ws.grows)
    assert grows[1] == grows[0], "the smaller call must reuse the buffers"
    assert ws.take("partial_o", (2, 300, 16, 8, HEAD_DIM), DTYPE, big.q.device).shape == (2, 300, 16, 8, HEAD_DIM)
    ws.lock()
    with pytest.raises(WorkspaceGrowthError, match="must grow"):
        ws.take("partial_o", (2, 3000, 16, 8, HEAD_DIM), DTYPE, big.q.device)  # past the 2 MiB granule


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU (sm_90)")
@pytest.mark.parametrize("partial_dtype", [None, torch.int8])
def test_workspace_on_the_gpu_default_path_and_graph(partial_dtype):
    """M3 shapes, the default path (the CUDA steps where the library is built), the indexer's selections and
    f = 0.9: bit-identical with and without a workspace; a CUDA graph captured with a warm, locked workspace replays
    on new q equal to an eager call without one."""
    from kernels.msa.indexer import msa_index_topk_triton

    n = 2048
    case = make_case([n // 2, n], [n // 2, n // 2], 64, 4, 128, torch.bfloat16, "cuda", seed=21)
    sel_idx = msa_index_topk_triton(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc,
                                    case.seq_lens, max_query_len=n // 2)
    ws = PrefillWorkspace()
    for sel in (sel_idx, local_selection(case.query_start_loc, case.seq_lens, 4, 0.9, seed=22)):
        args = (case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens)
        want = sparse_attention_triton(*args, partial_dtype=partial_dtype)
        sparse_attention_triton(*args, partial_dtype=partial_dtype, workspace=ws)
        _poison(ws)
        got = sparse_attention_triton(*args, partial_dtype=partial_dtype, workspace=ws)
        assert torch.equal(got, want)
    ws.lock()
    res = torch.empty_like(case.q)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        sparse_attention_triton(*args, out=res, partial_dtype=partial_dtype, workspace=ws)
    case.q.copy_(torch.randn_like(case.q))
    _poison(ws)
    graph.replay()
    assert torch.equal(res, sparse_attention_triton(*args, partial_dtype=partial_dtype))
