"""Comparison helpers shared by the CPU (interpreter) and GPU kernel tests."""
from __future__ import annotations

import torch

GPU = torch.cuda.is_available()
"""Where the kernel tests run: bf16 at real head size on a GPU, fp32 small shapes under the CPU interpreter."""
DEVICE = "cuda" if GPU else "cpu"
DTYPE = torch.bfloat16 if GPU else torch.float32
TOL = 2e-2 if GPU else 1e-5
HEAD_DIM = 128 if GPU else 32


def cuda_toolchain_missing() -> str:
    """Why the sm_90a library cannot be built here (nvcc or the CUTLASS headers missing), "" when it can."""
    from kernels.msa import cuda

    try:
        cuda.find_nvcc()
        cuda.cutlass_include()
    except cuda.CudaBuildError as exc:
        return str(exc)
    return ""


def assert_selection_equivalent(got: torch.Tensor, want: torch.Tensor, scores: torch.Tensor, tol: float,
                                max_near_tie_share: float = 1 / 500) -> None:
    """Same blocks per (head, token) as the reference, up to near-ties (score gap < tol) on at most
    ``max_near_tie_share`` of the rows.

    Also checks the layout contract: valid ids first, -1 after, no duplicates.
    """
    got, want, scores = got.cpu().long(), want.cpu().long(), scores.cpu()
    valid = got >= 0
    assert bool((valid[..., 1:] <= valid[..., :-1]).all()), "valid ids must come before -1 padding"
    assert torch.equal(valid.sum(-1), (want >= 0).sum(-1)), "number of selected blocks differs"
    sg, sw = got.sort(-1).values, want.sort(-1).values
    assert bool(((sg[..., 1:] != sg[..., :-1]) | (sg[..., 1:] < 0)).all()), "duplicate block ids"
    bad = (sg != sw).any(-1).nonzero().tolist()
    for h, t in bad:  # allowed only where the swapped blocks score the same within tol
        extra = set(sg[h, t].tolist()) - set(sw[h, t].tolist())
        missing = set(sw[h, t].tolist()) - set(sg[h, t].tolist())
        gap = max(abs(float(scores[h, t, a]) - float(scores[h, t, b])) for a in extra for b in missing)
        assert gap < tol, f"head {h} token {t}: picked {sorted(extra)} over {sorted(missing)} (gap {gap})"
    limit = max(2, int(got.shape[0] * got.shape[1] * max_near_tie_share))
    assert len(bad) <= limit, f"{len(bad)} near-tie rows is too many (limit {limit})"


def shuffled_slots(sel: torch.Tensor, seed: int) -> torch.Tensor:
    """Every (head, token) row's slots in a different random order (-1 holes end up anywhere); contiguous, on the
    CPU."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.rand(sel.shape, generator=gen).argsort(-1)
    return sel.cpu().gather(-1, order).contiguous()


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    """||got - want|| / ||want|| in fp64; NaN anywhere gives inf."""
    got, want = got.double().cpu(), want.double().cpu()
    if not bool(torch.isfinite(got).all()):
        return float("inf")
    return float((got - want).norm() / want.norm())


def assert_step_writes_like(split, group: int, want: tuple, got: tuple) -> None:  # noqa: ANN001 - a TileSplit
    """The tile-outer step alone, two kernels on one split (``want`` / ``got``: (out, partial_o, partial_lse), NaN
    before the call): the same direct rows of ``out`` and carrier parts (+ LSE), no other part, and the rows left to
    the merge untouched."""
    (out_t, po_t, lse_t), (out_c, po_c, lse_c) = want, got
    rows = split.direct.T[:, :, None].expand(-1, -1, group).reshape(out_t.shape[:2])
    parts = ~torch.isnan(lse_t)
    assert bool(rows.any()) or bool(parts.any())
    assert rel_err(out_c[rows], out_t[rows].float()) < TOL
    assert torch.equal(parts, ~torch.isnan(lse_c))  # the same parts written, no others
    if bool(parts.any()):
        assert rel_err(po_c[parts], po_t[parts].float()) < TOL
        assert float((lse_c[parts] - lse_t[parts]).abs().max()) < 1e-3
    assert bool(torch.isnan(out_c[~rows]).all())  # rows left to the merge are not touched


def kind_selection(case, kind: str, seed: int, max_query_len: int) -> torch.Tensor:  # noqa: ANN001 - an MSACase
    """"indexer": the indexer's top-k on the case's random inputs; else synthetic locality f = float(kind)."""
    from kernels.msa.indexer import msa_index_topk_triton
    from kernels.msa.inputs import local_selection

    if kind == "indexer":
        return msa_index_topk_triton(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc,
                                     case.seq_lens, max_query_len=max_query_len)
    return local_selection(case.query_start_loc, case.seq_lens, case.kv_cache.shape[1], float(kind), seed=seed)


def tail_reference(case, sel: torch.Tensor, tail: int) -> torch.Tensor:  # noqa: ANN001 - an MSACase
    """The fp32 reference (on the CPU) for the last ``tail`` tokens of the last request."""
    from kernels.msa import sparse_attention

    qsl = torch.tensor([0, tail], dtype=torch.int32)
    return sparse_attention(case.q[-tail:].cpu(), case.kv_cache.cpu(), sel[:, -tail:].cpu().contiguous(),
                            case.block_table[-1:].cpu(), qsl, case.seq_lens[-1:].cpu())


def dequantised_tail_reference(case, kv8: torch.Tensor, k_scale: float, v_scale: float, sel: torch.Tensor,  # noqa: ANN001
                               tail: int) -> torch.Tensor:
    """The fp32 reference on the dequantised fp8 cache for the last ``tail`` tokens of the last request."""
    import dataclasses

    from kernels.msa.inputs import dequantize_kv_fp8

    return tail_reference(dataclasses.replace(case, kv_cache=dequantize_kv_fp8(kv8, k_scale, v_scale)), sel, tail)
