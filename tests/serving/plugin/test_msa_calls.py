"""The plugin's batch plumbing (decode-first split, rebased prefill offsets, token-major selection buffer) with the
Triton kernels against the reference kernels: on CPU under TRITON_INTERPRET=1 (fp32, head_dim 32, as
tests/kernels/msa does), on a GPU in bf16 when one is present."""
from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():  # must be set before the kernels' @triton.jit run
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

from kernels.msa.inputs import make_case  # noqa: E402
from serving.plugin import msa_calls  # noqa: E402

GPU = torch.cuda.is_available()
DEVICE = "cuda" if GPU else "cpu"
DTYPE = torch.bfloat16 if GPU else torch.float32
HEAD_DIM = 128 if GPU else 32
TOP_K = 2
# (seq_len, q_len), decode-first: 2 decodes, a chunked prefill with 256 tokens of context, a fresh prefill
REQUESTS = [(300, 1), (519, 1), (456, 200), (300, 300)]
SENTINEL = -7


def mixed_batch():  # noqa: ANN201
    case = make_case([s for s, _ in REQUESTS], [q for _, q in REQUESTS], num_heads=8, num_kv_heads=2,
                     head_dim=HEAD_DIM, dtype=DTYPE, device=DEVICE, seed=3)
    qsl, nd = case.query_start_loc, 2
    decode = msa_calls.DecodePart(2, case.block_table[:2], case.seq_lens[:2], 1)
    prefill = msa_calls.PrefillPart(case.block_table[2:], (qsl[2:] - qsl[2]).to(torch.int32), case.seq_lens[2:],
                                    max(q for _, q in REQUESTS[2:]))
    return case, msa_calls.Batch(int(qsl[-1]), nd, decode, prefill)


def run(kernels: msa_calls.MSAKernels):  # noqa: ANN201
    case, batch = mixed_batch()
    n = batch.num_tokens
    buf = torch.full((n + 4, 2, TOP_K), SENTINEL, dtype=torch.int32, device=DEVICE)
    msa_calls.index_batch(kernels, batch, case.index_q, case.index_k_cache, buf, TOP_K, 0, 1)
    out = torch.zeros_like(case.q)
    msa_calls.attend_batch(kernels, batch, case.q, case.kv_cache, buf, out, HEAD_DIM ** -0.5)
    return buf, out


@pytest.fixture(scope="module")
def reference_run():  # noqa: ANN201
    return run(msa_calls.REFERENCE)


def test_reference_plumbing_fills_exactly_the_batch_rows(reference_run) -> None:  # noqa: ANN001
    buf, _ = reference_run
    n = sum(q for _, q in REQUESTS)
    assert bool((buf[n:] == SENTINEL).all())
    assert bool((buf[:n] != SENTINEL).all())
    # Tokens at position >= 256 see 3+ blocks: exactly TOP_K valid ids; the local block always among them.
    last = buf[n - 1]  # fresh prefill's last token, position 299 -> blocks 0..2, local block 2
    assert all(sorted(row.tolist()).count(2) == 1 and (row >= 0).sum() == TOP_K for row in last)


def test_triton_kernels_through_the_same_plumbing(reference_run) -> None:  # noqa: ANN001
    ref_buf, ref_out = reference_run
    buf, out = run(msa_calls.TRITON)
    n = sum(q for _, q in REQUESTS)
    assert bool((buf[n:] == SENTINEL).all()), "Triton wrote past the batch's rows"
    same = torch.sort(buf[:n], dim=-1).values == torch.sort(ref_buf[:n], dim=-1).values
    assert float(same.all(-1).float().mean()) > 0.99  # fp near-ties aside, identical selections
    agree = same.all(-1).all(-1)  # tokens whose selection matches on every KV head
    tol = 2e-2 if GPU else 1e-4
    torch.testing.assert_close(out[agree].float(), ref_out[agree].float(), atol=tol, rtol=tol)


def test_fp8_index_cache_through_the_plumbing() -> None:
    """`indexer_kv_dtype="fp8"`: vLLM hands an e4m3 index cache and an e4m3 index q; the Triton indexer's selection
    through the plugin's plumbing equals the reference's on the same e4m3 values, and only the batch rows are written."""
    case, batch = mixed_batch()
    q8, k8 = case.index_q.to(torch.float8_e4m3fn), case.index_k_cache.to(torch.float8_e4m3fn)
    n = batch.num_tokens
    bufs = []
    for kernels in (msa_calls.REFERENCE, msa_calls.TRITON):
        buf = torch.full((n + 4, 2, TOP_K), SENTINEL, dtype=torch.int32, device=DEVICE)
        msa_calls.index_batch(kernels, batch, q8, k8, buf, TOP_K, 0, 1)
        bufs.append(buf)
    ref, got = bufs
    assert bool((got[n:] == SENTINEL).all()) and bool((got[:n] != SENTINEL).all())
    same = torch.sort(got[:n], dim=-1).values == torch.sort(ref[:n], dim=-1).values
    assert float(same.all(-1).float().mean()) > 0.99


def test_triton_prefill_keeps_one_workspace_per_device() -> None:
    """v14u: the prefill rows run with the device's ``PrefillWorkspace``: it holds the partials after the first batch
    and a second batch of the same shape allocates nothing (and gives the same output)."""
    first_buf, first_out = run(msa_calls.TRITON)
    ws = msa_calls.prefill_workspace(first_out.device)
    grows = ws.grows
    assert grows > 0 and ws.nbytes > 0
    buf, out = run(msa_calls.TRITON)
    assert ws.grows == grows and torch.equal(buf, first_buf) and torch.equal(out, first_out)


@pytest.mark.parametrize("kernels", [msa_calls.REFERENCE, msa_calls.TRITON], ids=["reference", "triton"])
def test_fp8_kv_cache_through_the_plumbing(kernels: msa_calls.MSAKernels) -> None:
    """`--kv-cache-dtype fp8` (v17): an e4m3 cache with the layer's per-tensor scales, decode and prefill rows, equals
    the reference on the dequantised cache (the Triton kernels take the scales; the reference gets the cache
    dequantised first)."""
    from kernels.msa.inputs import dequantize_kv_fp8, quantize_kv_fp8

    case, batch = mixed_batch()
    n = batch.num_tokens
    buf = torch.full((n + 4, 2, TOP_K), SENTINEL, dtype=torch.int32, device=DEVICE)
    msa_calls.index_batch(msa_calls.REFERENCE, batch, case.index_q, case.index_k_cache, buf, TOP_K, 0, 1)
    kv8, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
    out = torch.zeros_like(case.q)
    msa_calls.attend_batch(kernels, batch, case.q, kv8, buf, out, HEAD_DIM ** -0.5, (k_scale, v_scale))
    want = torch.zeros_like(case.q)
    msa_calls.attend_batch(msa_calls.REFERENCE, batch, case.q, dequantize_kv_fp8(kv8, k_scale, v_scale), buf, want,
                           HEAD_DIM ** -0.5)
    tol = 2e-2 if GPU else 1e-4
    torch.testing.assert_close(out.float(), want.float(), atol=tol, rtol=tol)


def test_layer_kv_scales() -> None:
    """vLLM's per-tensor float scales are read; per-head scale tensors are refused with a clear error."""

    class Layer:
        _k_scale = torch.tensor([0.5])
        _v_scale = torch.tensor([2.0])
        _k_scale_float = 0.5
        _v_scale_float = 2.0

    assert msa_calls.layer_kv_scales(Layer()) == (0.5, 2.0)
    assert msa_calls.layer_kv_scales(object()) == (1.0, 1.0)
    Layer._k_scale = torch.ones(4)
    with pytest.raises(NotImplementedError, match="per-head"):
        msa_calls.layer_kv_scales(Layer())


def test_reserved_workspace_serves_the_prefill(monkeypatch) -> None:
    """`reserve_prefill` (vLLM's profiling run) sizes the partials for the token budget: a later prefill of that
    many tokens takes them without reallocating."""
    monkeypatch.setattr(msa_calls, "_WORKSPACES", {})
    case, batch = mixed_batch()
    ws = msa_calls.reserve_prefill(case.q.device, batch.num_tokens, 2, 4, HEAD_DIM, TOP_K, dtype=case.q.dtype)
    reserved = dict(ws._buffers)
    assert set(reserved) == {"partial_o", "partial_lse"}
    run(msa_calls.TRITON)
    assert all(ws._buffers[name] is buf for name, buf in reserved.items())  # not regrown


@pytest.mark.parametrize("group", [16, 8])
def test_reserved_workspace_holds_the_fp8_step_pages(group, monkeypatch) -> None:
    """With ``fp8_step`` the profiling run also reserves the FP8 step's e4m3 K / V^T copy of the widened pages, and
    the partials in the dtype that prefill takes (v18u: int8, with their row scales, at 8 query heads per KV head)."""
    monkeypatch.setattr(msa_calls, "_WORKSPACES", {})
    ws = msa_calls.reserve_prefill(torch.device(DEVICE), 64, 2, group, 128, TOP_K, widened_pages=5, fp8_step=True)
    int8 = group == 8
    assert set(ws._buffers) == {"partial_o", "partial_lse", "widened_kv", "fp8_pages"} | ({"partial_scale"} if int8
                                                                                          else set())
    assert ws._buffers["partial_o"].nbytes >= 2 * 64 * TOP_K * group * 128 * (1 if int8 else 2)
    assert ws._buffers["fp8_pages"].nbytes >= 5 * 2 * 128 * 256  # one byte per e4m3 element (stored as bytes)


def test_fp8_step_problem_names_what_is_missing() -> None:
    """vLLM's additional_config asks for the FP8 step at model load; each missing condition is named in one line."""
    m3 = dict(num_heads=16, num_kv_heads=1, head_dim=128, top_k=16)  # one TP-4 rank of M3's sparse layer
    cpu = torch.device("cpu")
    assert "not fp8 e4m3" in msa_calls.fp8_step_problem(msa_calls.TRITON, False, device=cpu, **m3)
    assert "has no FP8 step" in msa_calls.fp8_step_problem(msa_calls.REFERENCE, True, device=cpu, **m3)
    tp8 = dict(m3, num_heads=8)  # TP 8: 8 query heads per KV head on a rank (v18r: taken; only the device is missing)
    assert "not CUDA" in msa_calls.fp8_step_problem(msa_calls.TRITON, True, device=cpu, **tp8)
    odd = dict(m3, num_heads=4)
    assert "16 or 8 query heads per KV head" in msa_calls.fp8_step_problem(msa_calls.TRITON, True, device=cpu, **odd)
    assert msa_calls.fp8_step_problem(msa_calls.TRITON, True, device=None, **m3) == "no CUDA device"
    assert "not CUDA" in msa_calls.fp8_step_problem(msa_calls.TRITON, True, device=cpu, **m3)


def test_fp8_step_is_refused_without_an_fp8_cache_or_kernels_that_take_it() -> None:
    case, batch = mixed_batch()
    buf = torch.zeros((batch.num_tokens, 2, TOP_K), dtype=torch.int32, device=DEVICE)
    out = torch.zeros_like(case.q)
    with pytest.raises(ValueError, match="non-fp8 cache"):
        msa_calls.attend_batch(msa_calls.TRITON, batch, case.q, case.kv_cache, buf, out, 1.0, fp8_step=True)
    with pytest.raises(ValueError, match="reference:sparse_attention with an fp8 cache"):
        msa_calls.attend_batch(msa_calls.REFERENCE, batch, case.q, case.kv_cache.to(torch.float8_e4m3fn), buf, out,
                               1.0, (1.0, 1.0), fp8_step=True)


@pytest.mark.gpu
@pytest.mark.skipif(not GPU or torch.cuda.get_device_capability() != (9, 0), reason="needs an sm_90 GPU")
@pytest.mark.parametrize("group", [16, 8])
def test_fp8_step_through_the_plumbing(group, monkeypatch) -> None:
    """M3's per-rank group (16 query heads per KV head at TP <= 4, 8 at TP 8; head_dim 128; 2 KV heads) on an fp8
    cache, decodes then a chunked and a fresh prefill: ``fp8_step`` changes the prefill rows only, within the FP8 step's error bound
    (tests/kernels/msa/test_fp8_step.py) of the widened path and of the reference on the dequantised cache, and
    takes its pages from the reserved workspace."""
    from kernels.msa.inputs import quantize_kv_fp8
    from tests.kernels.msa.checks import rel_err
    from tests.kernels.msa.test_fp8_step import STEP_TOL

    monkeypatch.setattr(msa_calls, "_WORKSPACES", {})
    requests = [(3000, 1), (700, 1), (4096 + 2048, 2048), (3000, 3000)]
    case = make_case([s for s, _ in requests], [q for _, q in requests], num_heads=2 * group, num_kv_heads=2,
                     head_dim=128, dtype=torch.bfloat16, device="cuda", seed=5)
    qsl, nd, top_k = case.query_start_loc, 2, 8
    batch = msa_calls.Batch(int(qsl[-1]), nd, msa_calls.DecodePart(2, case.block_table[:2], case.seq_lens[:2], 1),
                            msa_calls.PrefillPart(case.block_table[2:], (qsl[2:] - qsl[2]).to(torch.int32),
                                                  case.seq_lens[2:], 3000))
    assert msa_calls.fp8_step_problem(msa_calls.TRITON, True, 2 * group, 2, 128, top_k, case.q.device) is None
    n = batch.num_tokens
    buf = torch.full((n, 2, top_k), SENTINEL, dtype=torch.int32, device="cuda")
    msa_calls.index_batch(msa_calls.TRITON, batch, case.index_q, case.index_k_cache, buf, top_k, 1, 2)
    kv8, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
    pages = int(sum(-(-s // 128) for s, _ in requests[2:]))
    ws = msa_calls.reserve_prefill(case.q.device, n, 2, group, 128, top_k, pages, fp8_step=True)
    parts = ("partial_o", "partial_lse") + (("partial_scale",) if group == 8 else ())  # v18u: int8 at 8 heads
    reserved = {name: ws._buffers[name] for name in ("fp8_pages", *parts)}
    outs = {}
    for name, kernels, fp8_step, q_terms in [("step", msa_calls.TRITON, True, 1), ("widened", msa_calls.TRITON, False, 1),
                                             ("ref", msa_calls.REFERENCE, False, 1), ("step2", msa_calls.TRITON, True, 2)]:
        outs[name] = torch.zeros_like(case.q)
        msa_calls.attend_batch(kernels, batch, case.q, kv8, buf, outs[name], 128 ** -0.5, (k_scale, v_scale),
                               fp8_step=fp8_step, fp8_q_terms=q_terms)
        if name == "step":  # the FP8 step's prefill took the reserved pages and partials: not regrown
            assert all(ws._buffers[key] is buf for key, buf in reserved.items())
    assert torch.equal(outs["step"][:nd], outs["widened"][:nd])  # decode rows: no FP8 step
    step, widened, ref = outs["step"][nd:], outs["widened"][nd:], outs["ref"][nd:].float()
    assert torch.isfinite(step).all()
    diff, err = rel_err(step, widened.float()), rel_err(step, ref)
    print(f"fp8_step through the plumbing, group {group}: vs widened {diff:.2e}, vs dequantised reference {err:.2e}, "
          f"widened vs reference {rel_err(widened, ref):.2e}")
    assert 1e-3 < diff < STEP_TOL and err < STEP_TOL  # the FP8 step ran (its error is visible) and is in bound
    # v18z: Q as two e4m3 terms reached the kernel: only P's rounding is left, so it is nearer the reference
    err2 = rel_err(outs["step2"][nd:], ref)
    print(f"fp8_step with fp8_q_terms=2, group {group}: vs dequantised reference {err2:.2e}")
    assert torch.equal(outs["step2"][:nd], outs["widened"][:nd]) and err2 < 0.9 * err
