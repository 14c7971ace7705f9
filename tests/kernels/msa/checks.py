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


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    """||got - want|| / ||want|| in fp64; NaN anywhere gives inf."""
    got, want = got.double().cpu(), want.double().cpu()
    if not bool(torch.isfinite(got).all()):
        return float("inf")
    return float((got - want).norm() / want.norm())
