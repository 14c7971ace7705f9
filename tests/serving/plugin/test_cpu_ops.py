"""The torch stand-ins for M3's CUDA-only ops (pure torch; the same code runs inside the CPU vLLM server)."""
import pytest
import torch

from serving.plugin import cpu_ops

HD, RD, EPS = 128, 64, 1e-6


def cos_sin_cache(max_pos: int = 1024, theta: float = 10000.0) -> torch.Tensor:
    inv = 1.0 / theta ** (torch.arange(0, RD, 2).float() / RD)
    freqs = torch.arange(max_pos).float()[:, None] * inv[None]
    return torch.cat([freqs.cos(), freqs.sin()], dim=-1)


def expected_heads(x: torch.Tensor, w: torch.Tensor, pos: torch.Tensor, cache: torch.Tensor) -> torch.Tensor:
    """Gemma norm then NeoX RoPE written as a complex rotation (an independent formulation)."""
    xf = x.float()
    xf = xf / torch.sqrt(xf.pow(2).mean(-1, keepdim=True) + EPS) * (1 + w.float())
    angle = torch.atan2(cache[pos, RD // 2:], cache[pos, :RD // 2])[:, None, :]  # [T, 1, RD/2]
    z = torch.complex(xf[..., :RD // 2], xf[..., RD // 2:RD]) * torch.polar(torch.ones_like(angle), angle)
    return torch.cat([z.real, z.imag, xf[..., RD:]], dim=-1)


def make_qkv(t: int, nh: int, nkv: int, nidx: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(t, (nh + 2 * nkv + nidx + (1 if nidx else 0)) * HD, generator=g).bfloat16()


def test_sparse_layer_norm_rope_and_cache_insert() -> None:
    t, nh, nkv, nidx, block, pages = 5, 4, 2, 2, 128, 3
    qkv = make_qkv(t, nh, nkv, nidx)
    original = qkv.clone()
    g = torch.Generator().manual_seed(1)
    wq, wk, wiq, wik = (torch.randn(HD, generator=g) * 0.1 for _ in range(4))
    pos = torch.tensor([3, 130, 7, 300, 0])
    slots = torch.tensor([5, 130, -1, 257, 383])  # -1: padding token, must not be written
    kv_cache = torch.zeros(pages, nkv, block, 2 * HD, dtype=torch.bfloat16)
    index_cache = torch.zeros(pages, block, HD, dtype=torch.bfloat16)
    q_out = torch.empty(t, nh * HD, dtype=torch.bfloat16)
    iq_out = torch.empty(t, nidx * HD, dtype=torch.bfloat16)
    cache = cos_sin_cache()
    cpu_ops.fused_qknorm_rope_kv_insert(
        qkv, wq, wk, cache, pos, nh, nkv, RD, EPS, wiq, wik, nidx, slots, slots, kv_cache, index_cache, block,
        q_out, iq_out, "auto",
    )
    sections = original.split([nh * HD, nkv * HD, nkv * HD, nidx * HD, HD], dim=-1)
    q, k, v, iq, ik = (s.view(t, -1, HD) for s in sections)
    tol = dict(atol=3e-2, rtol=2e-2)
    torch.testing.assert_close(q_out.view(t, nh, HD).float(), expected_heads(q, wq, pos, cache), **tol)
    torch.testing.assert_close(iq_out.view(t, nidx, HD).float(), expected_heads(iq, wiq, pos, cache), **tol)
    exp_k = expected_heads(k, wk, pos, cache)
    exp_ik = expected_heads(ik, wik, pos, cache)[:, 0]
    k_now = qkv[:, nh * HD:(nh + nkv) * HD].view(t, nkv, HD).float()
    torch.testing.assert_close(k_now, exp_k, **tol)  # k rewritten in place
    torch.testing.assert_close(qkv[:, :nh * HD], original[:, :nh * HD])  # q went to q_out, qkv's q untouched
    for row, slot in enumerate(slots.tolist()):
        if slot < 0:
            continue
        page, off = divmod(slot, block)
        torch.testing.assert_close(kv_cache[page, :, off, :HD].float(), exp_k[row], **tol)
        torch.testing.assert_close(kv_cache[page, :, off, HD:], v[row])
        torch.testing.assert_close(index_cache[page, off].float(), exp_ik[row], **tol)
    written = {s for s in slots.tolist() if s >= 0}
    untouched = [s for s in range(pages * block) if s not in written]
    flat_kv = kv_cache.permute(0, 2, 1, 3).reshape(pages * block, -1)
    assert flat_kv[untouched].abs().sum() == 0
    assert index_cache.view(pages * block, HD)[untouched].abs().sum() == 0


def test_dense_layer_in_place_without_caches() -> None:
    t, nh, nkv = 3, 4, 2
    qkv = make_qkv(t, nh, nkv, 0, seed=2)
    original = qkv.clone()
    w = torch.zeros(HD)
    pos = torch.tensor([0, 1, 2])
    cache = cos_sin_cache()
    cpu_ops.fused_qknorm_rope_kv_insert(qkv, w, w, cache, pos, nh, nkv, RD, EPS, kv_cache_dtype="auto")
    q, k, v = original.split([nh * HD, nkv * HD, nkv * HD], dim=-1)
    torch.testing.assert_close(qkv[:, :nh * HD].view(t, nh, HD).float(),
                               expected_heads(q.view(t, nh, HD), w, pos, cache), atol=3e-2, rtol=2e-2)
    torch.testing.assert_close(qkv[:, (nh + nkv) * HD:], v)  # v untouched


def test_unsupported_paths_are_refused() -> None:
    qkv = make_qkv(1, 4, 2, 0)
    w = torch.zeros(HD)
    with pytest.raises(cpu_ops.FusedOpUnsupported, match="kv_cache_dtype"):
        cpu_ops.fused_qknorm_rope_kv_insert(qkv, w, w, cos_sin_cache(), torch.tensor([0]), 4, 2, RD, EPS,
                                            kv_cache_dtype="fp8_e5m2")
    with pytest.raises(cpu_ops.FusedOpUnsupported, match="nvfp4"):
        cpu_ops.fused_qknorm_rope_kv_insert(qkv, w, w, cos_sin_cache(), torch.tensor([0]), 4, 2, RD, EPS,
                                            kv_cache_dtype="nvfp4", kv_k_scale=torch.ones(1))


@pytest.mark.parametrize("kv_cache_dtype", ["fp8", "fp8_e4m3"])
def test_fp8_cache_insert(kv_cache_dtype: str) -> None:
    """An fp8 e4m3 cache (vLLM allocates it as uint8): k (normed, roped) and v land as saturating e4m3 casts at
    their slots; the padding token and the rest of the cache stay zero."""
    t, nh, nkv, block, pages = 3, 4, 2, 128, 2
    qkv = make_qkv(t, nh, nkv, 0, seed=5)
    qkv[2, (nh + nkv) * HD] = 1000.0  # a V value past e4m3's range: saturates to 448, never NaN
    v = qkv[:, (nh + nkv) * HD:(nh + 2 * nkv) * HD].view(t, nkv, HD).clone()
    w = torch.zeros(HD)
    pos, slots = torch.tensor([0, 5, 200]), torch.tensor([3, -1, 129])
    kv_cache = torch.zeros(pages, nkv, block, 2 * HD, dtype=torch.uint8)
    cpu_ops.fused_qknorm_rope_kv_insert(qkv, w, w, cos_sin_cache(), pos, nh, nkv, RD, EPS, slot_mapping=slots,
                                        kv_cache=kv_cache, block_size=block, kv_cache_dtype=kv_cache_dtype)
    cache = kv_cache.view(torch.float8_e4m3fn).float()
    k = qkv[:, nh * HD:(nh + nkv) * HD].view(t, nkv, HD)  # normed + roped in place
    for token, slot in ((0, 3), (2, 129)):
        page, offset = divmod(slot, block)
        assert torch.equal(cache[page, :, offset, :HD], k[token].float().to(torch.float8_e4m3fn).float())
        want_v = v[token].float().clamp(-448, 448).to(torch.float8_e4m3fn).float()
        assert torch.equal(cache[page, :, offset, HD:], want_v)
    assert float(cache[1, 0, 1, HD]) == 448.0 and not bool(torch.isnan(cache).any())
    kv_cache[0, :, 3] = 0
    kv_cache[1, :, 1] = 0
    assert not bool(kv_cache.any())  # nothing else written (bytes: e4m3's -0 is not a zero byte)


def test_gemma_norms() -> None:
    g = torch.Generator().manual_seed(3)
    x, r, w = (torch.randn(4, 64, generator=g) for _ in range(3))
    y = cpu_ops.gemma_rms_norm(x, w, EPS)
    torch.testing.assert_close(y, x / x.pow(2).mean(-1, keepdim=True).add(EPS).sqrt() * (1 + w))
    xb, rb = x.clone(), r.clone()
    out, res = cpu_ops.gemma_fused_add_rms_norm(xb, rb, w, EPS)
    assert out is xb and res is rb  # in place, like FlashInfer
    torch.testing.assert_close(res, x + r)
    torch.testing.assert_close(out, cpu_ops.gemma_rms_norm(x + r, w, EPS))


def test_interleave_w13() -> None:
    gate = torch.arange(3).float()[None, :, None].expand(2, 3, 4)
    up = (10 + torch.arange(3)).float()[None, :, None].expand(2, 3, 4)
    out = cpu_ops.interleave_w13(torch.cat([gate, up], dim=1))
    assert out[0, :, 0].tolist() == [0, 10, 1, 11, 2, 12]
    with pytest.raises(ValueError, match="odd"):
        cpu_ops.interleave_w13(torch.zeros(1, 3, 2))
