"""The MSA kernels' paths, each run once at a small M3-shaped case, for compute-sanitizer to watch.

``python -m tests.kernels.msa.sanitize_msa [CASE ...]`` (all cases when none is named) runs each case, synchronises,
and prints ``ok CASE``; ``test_cuda_sanitizer.py`` runs it under ``compute-sanitizer --tool T`` with PyTorch's caching
allocator off, so every tensor is its own allocation and a read past its end is reported instead of landing in a
neighbour. The CUDA steps are forced (``tile_impl="cuda"``, ``kv_impl="cuda"``), so a case fails rather than fall
back to Triton when the library cannot run. Cases cover what the sm_90a kernels branch on: the group (16 and 8
query heads per KV head), bf16 / int8 partials, fused / unfused merge, the FP8 step on an e4m3 cache, a chunked
request after context next to a whole one (tiles spanning the two), slots in any order and a hole (-1), tokens with
fewer than top-k visible blocks, and a reused workspace; plus the Triton indexer (bf16, e4m3) and decode."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable

import torch

from kernels.msa.decode import sparse_decode_triton
from kernels.msa.indexer import msa_index_topk_triton
from kernels.msa.inputs import MSACase, local_selection, make_case, quantize_kv_fp8
from kernels.msa.merge import device_positions
from kernels.msa.prefill import build_block_csr, kv_outer_partials, sparse_attention_triton
from kernels.msa.workspace import PrefillWorkspace

SEQ_LENS, Q_LENS = [2600, 700], [300, 700]
"""A chunk of 300 queries after 2300 tokens of context (more visible blocks than top-k, so tokens' selections
differ) next to a whole 700-token request (its first tokens see fewer than 16 blocks); 1000 tokens in all, which
is not a multiple of either tile (8 or 16 tokens). The context is not either: the chunk's first tile is 4 tokens
(tiles are cut at positions, v19b)."""


def _case(num_heads: int, seed: int) -> MSACase:
    return make_case(SEQ_LENS, Q_LENS, num_heads, 4, 128, torch.bfloat16, "cuda", seed=seed)


def _indexer_selection(case: MSACase) -> torch.Tensor:
    return msa_index_topk_triton(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc,
                                 case.seq_lens, max_query_len=case.max_query_len)


def _shuffled_local(case: MSACase, shared: float, seed: int) -> torch.Tensor:
    """Synthetic locality, the slots permuted (the local block anywhere) and one hole."""
    sel = local_selection(case.query_start_loc, case.seq_lens, case.kv_cache.shape[1], shared, seed=seed)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    sel = sel[:, :, torch.randperm(sel.shape[2], generator=gen).cuda()].contiguous()
    sel[1, 150, 3] = -1
    return sel


KV_IMPL = ["cuda"]
"""The KV-outer stage's kernel (``--kv-impl``)."""


def _prefill(case: MSACase, sel: torch.Tensor, **knobs: object) -> torch.Tensor:
    return sparse_attention_triton(case.q, case.kv_cache, sel, case.block_table, case.query_start_loc,
                                   case.seq_lens, tile_impl="cuda", kv_impl=KV_IMPL[0], **knobs)


def indexer() -> None:
    case = _case(64, seed=1)
    _indexer_selection(case)
    fp8 = dataclasses.replace(case, index_q=case.index_q.to(torch.float8_e4m3fn),
                              index_k_cache=case.index_k_cache.to(torch.float8_e4m3fn))
    _indexer_selection(fp8)


def prefill_group16() -> None:
    case = _case(64, seed=2)
    _prefill(case, _indexer_selection(case))  # little shared: mostly KV-outer + merge
    sel = _shuffled_local(case, 0.9, seed=3)  # mostly tile-outer, strays folded in
    for partials in (torch.bfloat16, torch.int8):
        for fuse in (True, False):
            _prefill(case, sel, partial_dtype=partials, fuse_merge=fuse)


def prefill_kv_outer_only() -> None:
    """``max_union=0`` (v6's path): every entry a part (the CSR by sort), the merge over all of them; at 16 query
    heads per KV head with bf16 parts and at 8 with int8 parts (the KV-outer kernel's other epilogue)."""
    for num_heads, partials, seed in ((64, torch.bfloat16, 2), (32, torch.int8, 12)):
        case = _case(num_heads, seed)
        _prefill(case, _shuffled_local(case, 0.9, seed=seed + 1), max_union=0, partial_dtype=partials)


def kv_parts() -> None:
    """The KV-outer stage alone, then the last token's parts (all 16 slots selected) read back by torch. Under
    initcheck, `--kv-impl cuda` shows every value read as uninitialised (the tool does not count the kernel's TMA
    stores as writes; the LSEs, plain stores, are clean) and `--kv-impl triton` nothing (NOTES.md v18x)."""
    case = make_case([2600], [300], 64, 4, 128, torch.bfloat16, "cuda", seed=3)
    sel = _indexer_selection(case)
    assert bool((sel[:, -1] >= 0).all())
    csr = build_block_csr(sel, case.query_start_loc, case.block_table.shape[1], 128)
    pos = device_positions(case.query_start_loc, case.seq_lens, sel.shape[1])
    if KV_IMPL[0] == "cuda":
        from kernels.msa.cuda import kv_outer_partials_cuda as stage
    else:
        stage = kv_outer_partials
    po, plse, _ = stage(case.q, case.kv_cache, case.block_table, case.seq_lens, csr, pos, 16, 128 ** -0.5, 128)
    print(f"last token's parts: sum {float(po[:, -1].float().sum()):.6g}, LSE sum {float(plse[:, -1].sum()):.6g}")


def prefill_group8() -> None:
    case = _case(32, seed=4)
    _prefill(case, _indexer_selection(case))
    sel = _shuffled_local(case, 0.9, seed=5)
    for partials in (torch.bfloat16, torch.int8):
        _prefill(case, sel, partial_dtype=partials)
    _prefill(case, sel, fuse_merge=False)


def prefill_fp8_step() -> None:
    for num_heads, seed in ((64, 6), (32, 7)):
        case = _case(num_heads, seed)
        kv8, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
        case8 = dataclasses.replace(case, kv_cache=kv8)
        for sel in (_indexer_selection(case), _shuffled_local(case, 0.9, seed + 10)):
            for q_terms in (1, 2):  # v18z: 2, Q's second e4m3 term (at 32 heads with int8 parts, three staged)
                _prefill(case8, sel, k_scale=k_scale, v_scale=v_scale, fp8_step=True, fp8_q_terms=q_terms)
        _prefill(case8, sel, k_scale=k_scale, v_scale=v_scale)  # widened bf16 pages, the bf16 steps


def prefill_workspace() -> None:
    """Two calls on one workspace (as the plugin serves): the second reads buffers the first left behind."""
    case = _case(64, seed=8)
    ws = PrefillWorkspace()
    for shared, seed in ((0.9, 9), (0.3, 10)):
        _prefill(case, _shuffled_local(case, shared, seed), workspace=ws)


def decode() -> None:
    case = make_case([2600, 900, 4000], [1, 1, 1], 64, 4, 128, torch.bfloat16, "cuda", seed=11)
    sel = _indexer_selection(case)
    sparse_decode_triton(case.q, case.kv_cache, sel, case.block_table, case.seq_lens)
    kv8, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
    sparse_decode_triton(case.q, kv8, sel, case.block_table, case.seq_lens, k_scale=k_scale, v_scale=v_scale)


CASES: dict[str, Callable[[], None]] = {f.__name__: f for f in (
    indexer, prefill_group16, prefill_group8, prefill_fp8_step, prefill_workspace, decode, kv_parts,
    prefill_kv_outer_only)}
"""What ``test_cuda_sanitizer`` runs (clean under memcheck, racecheck and synccheck on the H200, NOTES.md v18x,
v18y). The last two give a CTA of the CUDA KV-outer stage more than four groups of 32 entries, so its metadata ring
wraps (4.5 and 15 groups per CTA on 132 SMs); racecheck's hazard on the ring's header (v18y) showed only with them."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.kernels.msa.sanitize_msa", description=__doc__.split("\n")[0])
    parser.add_argument("cases", nargs="*", metavar="CASE",
                        help=f"any of {', '.join(CASES)} (default: all)")
    parser.add_argument("--kv-impl", choices=["cuda", "triton"], default="cuda",
                        help="the KV-outer stage's kernel (default: the CUDA one)")
    args = parser.parse_args(argv)
    KV_IMPL[0] = args.kv_impl
    names = args.cases or list(CASES)
    if unknown := [n for n in names if n not in CASES]:
        parser.error(f"unknown case(s): {', '.join(unknown)}")
    for name in names:
        CASES[name]()
        torch.cuda.synchronize()
        print(f"ok {name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
