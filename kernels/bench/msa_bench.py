"""MSA benchmark on one GPU: our Triton kernels against vLLM's Hopper kernels, dense SDPA and FlexAttention.

Run (on the GPU machine, from the repo root):
    python -m kernels.bench.msa_bench --vllm-ops .bench-vendor --json $OUT/msa_bench.json
``--vllm-ops`` holds copies of vLLM's sparse_attn.py and index_topk.py (see vllm_standin.py). Prints a
markdown table last. Shapes: M3 (64 query heads, 4 KV heads, head_dim 128, bf16), per-token top-16 selection
produced by the indexer on random inputs. Every timing is a median of CUDA-event timings (triton do_bench).
"""
from __future__ import annotations

import argparse
import functools
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

HEADS, KV_HEADS, HEAD_DIM = 64, 4, 128


@dataclass
class Row:
    """One measured line of the table."""

    section: str
    shape: str
    impl: str
    time_ms: float
    tflops: float | None = None
    tb_per_s: float | None = None
    note: str = ""


def bench_ms(fn, rep_ms: float = 200.0) -> float:
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=25, rep=rep_ms, return_mode="median"))


def graph_ms(fn) -> float:
    """Median time of ``fn`` replayed from a CUDA graph (how vLLM runs decode; hides launch overhead)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return bench_ms(graph.replay)


def ceilings() -> tuple[float, float]:
    """(copy bandwidth TB/s counting read + write, bf16 GEMM TFLOP/s), measured here."""
    src = torch.randn(2 ** 30 // 2, device="cuda", dtype=torch.bfloat16)  # 1 GiB
    dst = torch.empty_like(src)
    copy_ms = bench_ms(lambda: dst.copy_(src))
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    gemm_ms = bench_ms(lambda: a @ b)
    return 2 * 2 ** 30 / copy_ms / 1e9, 2 * 8192 ** 3 / gemm_ms / 1e9


def attention_flops(selection: torch.Tensor, positions: torch.Tensor) -> float:
    """FLOPs of exact attention over the selected keys (QK and PV: 4 * visible keys * d per head)."""
    blk = selection.long()
    visible = (positions.long()[None, :, None] - blk * 128 + 1).clamp(0, 128)
    keys = torch.where(blk >= 0, visible, 0).sum()  # summed over kv heads, tokens, slots
    return float(keys) * (HEADS // KV_HEADS) * HEAD_DIM * 4


def bench_indexer(case, vllm_index, rows: list[Row], n: int, gemm_tflops: float, tag: str = "") -> torch.Tensor:
    """Ours vs vLLM's indexer on the case's index q / cache (``tag`` names their dtype in the rows, v13r)."""
    from kernels.msa.indexer import msa_index_topk_triton

    args = (case.index_q, case.index_k_cache, case.block_table, case.query_start_loc, case.seq_lens)
    sel = msa_index_topk_triton(*args, max_query_len=n)
    score_flops = KV_HEADS * 2 * HEAD_DIM * 128 * sum(p // 128 + 1 for p in range(0, n, 128)) * 128
    t = bench_ms(lambda: msa_index_topk_triton(*args, max_query_len=n))
    rows.append(Row("indexer", f"N={n // 1024}K", f"ours: fused block-max + top-k{tag}", t, score_flops / t / 1e9,
                    note=f"{score_flops / t / 1e9 / gemm_tflops:.0%} of GEMM"))
    if vllm_index is not None:
        prefix = torch.zeros(1, dtype=torch.int32, device="cuda")

        def vllm_run() -> torch.Tensor:
            score = vllm_index.minimax_m3_index_score(case.index_q, case.index_k_cache, case.block_table,
                                                      case.query_start_loc, case.seq_lens, prefix, n, n, KV_HEADS)
            return vllm_index.minimax_m3_index_topk(score, case.query_start_loc, prefix, n, 16, 0, 1)

        ref = vllm_run()
        t_v = bench_ms(vllm_run)
        same = (sel.sort(-1).values == ref.sort(-1).values).all(-1).float().mean().item()
        rows.append(Row("indexer", f"N={n // 1024}K", f"vLLM index_score + topk{tag}", t_v, score_flops / t_v / 1e9,
                        note=f"ours {t_v / t:.2f}x faster; same set on {same:.2%} rows"))
    return sel


def check_against_reference(case, sel: torch.Tensor, out: torch.Tensor, n: int, tail: int = 48) -> tuple[float, float]:
    """Reference (fp32, CPU) on the last ``tail`` tokens: (selection agreement, attention rel. error)."""
    from kernels.msa import msa_index_topk, sparse_attention

    qsl = torch.tensor([0, tail], dtype=torch.int32)
    cpu = dict(block_table=case.block_table.cpu(), query_start_loc=qsl, seq_lens=case.seq_lens.cpu())
    ref_sel = msa_index_topk(case.index_q[-tail:].cpu(), case.index_k_cache.cpu(), **cpu)
    agree = (ref_sel.sort(-1).values == sel[:, -tail:].cpu().sort(-1).values).all(-1).float().mean().item()
    ref = sparse_attention(case.q[-tail:].cpu(), case.kv_cache.cpu(), sel[:, -tail:].cpu().contiguous(), **cpu)
    err = float((out[-tail:].double().cpu() - ref.double()).norm() / ref.double().norm())
    return agree, err


def bench_prefill(n: int, vllm_sparse, vllm_index, flex_max: int, dense: bool, rows: list[Row],
                  gemm_tflops: float, check: bool, sweep: bool = False) -> None:
    from kernels.msa.inputs import make_case
    from kernels.msa.merge import device_positions
    from kernels.msa.prefill import sparse_attention_triton

    shape = f"N={n // 1024}K"
    case = make_case([n], [n], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=n)
    sel = bench_indexer(case, vllm_index, rows, n, gemm_tflops)
    pos = device_positions(case.query_start_loc, case.seq_lens, n)
    flops = attention_flops(sel, pos)
    scale = HEAD_DIM ** -0.5
    out = torch.empty_like(case.q)
    ours = lambda: sparse_attention_triton(case.q, case.kv_cache, sel, case.block_table, case.query_start_loc,  # noqa: E731
                                           case.seq_lens, scale, out)
    ours()
    t = bench_ms(ours)
    note = f"floor {flops / gemm_tflops / 1e9:.2f} ms"
    if check:
        agree, err = check_against_reference(case, sel, out, n)
        note += f"; ref check last 48 tok: sel {agree:.0%}, err {err:.1e}"
    rows.append(Row("prefill", shape, "ours: KV-outer (CSR+attn+merge)", t, flops / t / 1e9, note=note))
    prefill_breakdown(case, sel, pos, n, scale, rows, flops, sweep=sweep)
    if vllm_sparse is not None:
        out_v = torch.empty_like(case.q)
        zero = torch.zeros(1, dtype=torch.int32, device="cuda")
        vl = lambda: vllm_sparse.minimax_m3_sparse_attn(case.q, case.kv_cache, sel, case.block_table,  # noqa: E731
                                                        case.query_start_loc, case.seq_lens, zero, n, KV_HEADS,
                                                        scale, out_v)
        vl()
        diff = float((out.float() - out_v.float()).norm() / out_v.float().norm())
        t_v = bench_ms(vl)
        rows.append(Row("prefill", shape, "vLLM query-outer (Hopper Triton)", t_v, flops / t_v / 1e9,
                        note=f"ours {t_v / t:.2f}x; ‖ours−vLLM‖/‖vLLM‖ {diff:.1e}"))
    if dense:
        bench_dense(case, n, rows, t, flops)
    if n <= flex_max:
        bench_flex(case, sel, n, rows, t, flops)


def prefill_breakdown(case, sel, pos, n: int, scale: float, rows: list[Row], flops: float, sweep: bool) -> None:
    """Time the three stages alone (CSR build, KV-outer attention, merge); at one size, sweep the knobs."""
    from kernels.msa.merge import merge_partials
    from kernels.msa.prefill import build_block_csr, kv_outer_partials

    shape = f"N={n // 1024}K"
    nb = case.block_table.shape[1]
    t_csr = bench_ms(lambda: build_block_csr(sel, case.query_start_loc, nb, 128))
    csr = build_block_csr(sel, case.query_start_loc, nb, 128)
    po, plse, _ = kv_outer_partials(case.q, case.kv_cache, case.block_table, case.seq_lens, csr, pos, 16, scale, 128)
    t_attn = bench_ms(lambda: kv_outer_partials(case.q, case.kv_cache, case.block_table, case.seq_lens, csr, pos, 16,
                                                scale, 128))
    out = torch.empty_like(case.q)
    t_merge = bench_ms(lambda: merge_partials(po, plse, out, sel))
    part_bytes = po.numel() * po.element_size() + plse.numel() * 4
    q_bytes = sel.ge(0).sum().item() * (HEADS // KV_HEADS) * HEAD_DIM * 2
    rows.append(Row("prefill-stages", shape, "CSR build (torch sort/bincount)", t_csr))
    rows.append(Row("prefill-stages", shape, "KV-outer attention kernel", t_attn, flops / t_attn / 1e9,
                    tb_per_s=(part_bytes + q_bytes) / t_attn / 1e9,
                    note=f"writes {part_bytes / 1e9:.1f} GB partials, gathers {q_bytes / 1e9:.1f} GB of Q"))
    rows.append(Row("prefill-stages", shape, "merge kernel", t_merge, tb_per_s=(part_bytes + out.numel() * 2) / t_merge / 1e9))
    if not sweep:
        return
    for tile_rows, warps, chunk in ((128, 8, 128), (64, 4, 64), (64, 4, 128), (64, 4, 256), (32, 4, 128),
                                    (32, 2, 128)):
        c = build_block_csr(sel, case.query_start_loc, nb, chunk)
        try:
            t_k = bench_ms(lambda: kv_outer_partials(case.q, case.kv_cache, case.block_table, case.seq_lens, c, pos,
                                                     16, scale, chunk, warps, tile_rows=tile_rows), rep_ms=100)
            rows.append(Row("prefill-sweep", shape, f"attn rows={tile_rows} warps={warps} chunk={chunk}", t_k,
                            flops / t_k / 1e9))
        except Exception as exc:  # noqa: BLE001 - a config that does not compile is a row, not the end
            rows.append(Row("prefill-sweep", shape, f"attn rows={tile_rows} warps={warps} chunk={chunk}",
                            float("nan"), note=type(exc).__name__))
    c = build_block_csr(sel, case.query_start_loc, nb, 128, 2048)
    t_k = bench_ms(lambda: kv_outer_partials(case.q, case.kv_cache, case.block_table, case.seq_lens, c,
                                             pos, 16, scale, 128), rep_ms=100)
    rows.append(Row("prefill-sweep", shape, "attn (defaults) window=2048", t_k, flops / t_k / 1e9))
    for merge_rows in (16, 64, 128):
        t_m = bench_ms(lambda: merge_partials(po, plse, out, sel, rows=merge_rows), rep_ms=100)
        rows.append(Row("prefill-sweep", shape, f"merge rows={merge_rows}", t_m,
                        tb_per_s=(part_bytes + out.numel() * 2) / t_m / 1e9))


def bench_dense(case, n: int, rows: list[Row], t_ours: float, flops_sparse: float) -> None:
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q = case.q.transpose(0, 1)[None]  # [1, H, N, D]
    kv = case.kv_cache.transpose(1, 2).flatten(0, 1)[:n]  # pages are shuffled: order does not matter for timing
    k = kv[..., :HEAD_DIM].transpose(0, 1)[None].repeat_interleave(HEADS // KV_HEADS, 1)
    v = kv[..., HEAD_DIM:].transpose(0, 1)[None].repeat_interleave(HEADS // KV_HEADS, 1)
    dense_flops = 4 * HEADS * HEAD_DIM * n * (n + 1) / 2
    for name, backend in (("cuDNN", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION)):
        try:
            with sdpa_kernel(backend):
                fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)  # noqa: E731
                fn()
                t = bench_ms(fn, rep_ms=100 if n < 65536 else 1)
            rows.append(Row("prefill", f"N={n // 1024}K", f"dense causal SDPA ({name})", t, dense_flops / t / 1e9,
                            note=f"ours {t / t_ours:.1f}x; effective sparse {flops_sparse / t / 1e9:.0f} TFLOP/s"))
        except RuntimeError as exc:
            rows.append(Row("prefill", f"N={n // 1024}K", f"dense causal SDPA ({name})", float("nan"),
                            note=f"failed: {str(exc)[:80]}"))


def bench_flex(case, sel: torch.Tensor, n: int, rows: list[Row], t_ours: float, flops: float) -> None:
    from torch.nn.attention.flex_attention import BlockMask, flex_attention

    group = HEADS // KV_HEADS
    nb = n // 128
    chosen = torch.zeros(KV_HEADS, n, nb + 1, dtype=torch.bool, device="cuda")
    chosen.scatter_(2, torch.where(sel >= 0, sel, nb).long(), True)

    def mask_mod(b, h, q_idx, kv_idx):
        return (kv_idx <= q_idx) & chosen[h // group, q_idx, kv_idx // 128]

    # Tiles to visit: for each 128-query tile, the union of the blocks its tokens selected (built directly:
    # create_block_mask would evaluate mask_mod on all H x N x N points).
    t0 = time.time()
    union = chosen[:, :, :nb].view(KV_HEADS, nb, 128, nb).any(2).repeat_interleave(group, 0)[None]  # [1, H, nq, nb]
    kv_num = union.sum(-1, dtype=torch.int32)
    kv_idx = torch.argsort(union.to(torch.int8), dim=-1, descending=True, stable=True).to(torch.int32)
    block_mask = BlockMask.from_kv_blocks(kv_num, kv_idx, BLOCK_SIZE=128, mask_mod=mask_mod, seq_lengths=(n, n))
    mask_s = time.time() - t0
    tiles = float(kv_num.sum()) / (HEADS * nb * (nb + 1) / 2)
    flex = torch.compile(flex_attention)
    q = case.q.transpose(0, 1)[None]
    kv = case.kv_cache.transpose(1, 2).flatten(0, 1)[:n]
    k = kv[..., :HEAD_DIM].transpose(0, 1)[None].contiguous()
    v = kv[..., HEAD_DIM:].transpose(0, 1)[None].contiguous()
    fn = lambda: flex(q, k, v, block_mask=block_mask, enable_gqa=True)  # noqa: E731
    fn()
    t = bench_ms(fn, rep_ms=100)
    rows.append(Row("prefill", f"N={n // 1024}K", "FlexAttention, per-token mask", t, flops / t / 1e9,
                    note=f"ours {t / t_ours:.1f}x; visits {tiles:.0%} of causal tiles; mask build {mask_s:.1f} s untimed"))


def bench_decode(batch: int, ctx: int, vllm_sparse, rows: list[Row], copy_tbs: float, check: bool,
                 query_len: int = 1, sweep: bool = False, fp8: bool = False) -> None:
    from kernels.msa import sparse_decode
    from kernels.msa.decode import sparse_decode_triton
    from kernels.msa.indexer import msa_index_topk_triton
    from kernels.msa.inputs import make_case
    from kernels.msa.merge import device_positions

    shape = f"B={batch} ctx={ctx // 1024}K" + (f" q={query_len}" if query_len > 1 else "")
    case = make_case([ctx] * batch, [query_len] * batch, HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda",
                     seed=batch + ctx)
    sel = msa_index_topk_triton(case.index_q, case.index_k_cache, case.block_table, case.query_start_loc,
                                case.seq_lens, max_query_len=query_len)
    pos = device_positions(case.query_start_loc, case.seq_lens, batch * query_len)
    keys = attention_flops(sel, pos) / ((HEADS // KV_HEADS) * HEAD_DIM * 4)
    nbytes = keys * 2 * HEAD_DIM * 2  # K and V bf16 of every selected visible key, read once
    scale = HEAD_DIM ** -0.5
    out = torch.empty_like(case.q)

    def ours(splits=None, stages=3, warps=4):
        return lambda: sparse_decode_triton(case.q, case.kv_cache, sel, case.block_table, case.seq_lens, query_len,
                                            scale, out, num_splits=splits, num_stages=stages, num_warps=warps)

    ours()()
    t = graph_ms(ours()) * 1e3  # us
    t_eager = bench_ms(ours()) * 1e3
    note = f"{nbytes / t / 1e6 / copy_tbs:.0%} of copy BW; eager {t_eager:.0f} us"
    if check:
        n_chk = 4 * query_len
        ref = sparse_decode(case.q[:n_chk].cpu(), case.kv_cache.cpu(), sel[:, :n_chk].cpu().contiguous(),
                            case.block_table[:4].cpu(), case.seq_lens[:4].cpu(), query_len, scale)
        err = float((out[:n_chk].double().cpu() - ref.double()).norm() / ref.double().norm())
        note += f"; ref err {err:.1e}"
    rows.append(Row("decode", shape, "ours: split-K + merge (graph)", t / 1e3, tb_per_s=nbytes / t / 1e6, note=note))
    if fp8:
        bench_decode_fp8(case, sel, query_len, out, shape, rows, t, nbytes)
    if sweep:
        for splits, stages, warps in ((1, 3, 4), (2, 3, 4), (4, 3, 4), (2, 3, 2), (2, 3, 8), (1, 3, 8), (2, 4, 4)):
            t_s = graph_ms(ours(splits, stages, warps)) * 1e3
            rows.append(Row("decode-sweep", shape, f"ours splits={splits} stages={stages} warps={warps}", t_s / 1e3,
                            tb_per_s=nbytes / t_s / 1e6))
    if vllm_sparse is not None:
        out_v = torch.empty_like(case.q)
        vl = lambda: vllm_sparse.minimax_m3_sparse_attn_decode(case.q, case.kv_cache, sel, case.block_table,  # noqa: E731
                                                               case.seq_lens, KV_HEADS, scale, out_v, query_len)
        vl()
        diff = float((out.float() - out_v.float()).norm() / out_v.float().norm())
        t_v = graph_ms(vl) * 1e3
        t_v_eager = bench_ms(vl) * 1e3
        rows.append(Row("decode", shape, "vLLM split-K decode (graph)", t_v / 1e3, tb_per_s=nbytes / t_v / 1e6,
                        note=f"ours {t_v / t:.2f}x; eager {t_v_eager:.0f} us; ‖ours−vLLM‖/‖vLLM‖ {diff:.1e}"))


def bench_decode_fp8(case, sel, query_len: int, out_bf16: torch.Tensor, shape: str, rows: list[Row], t_bf16_us: float,
                     nbytes_bf16: float) -> None:
    """Our decode on an fp8 e4m3 copy of the cache (per-tensor scales): time, and the output's difference from
    the bf16 cache's output."""
    from kernels.msa.decode import sparse_decode_triton
    from kernels.msa.inputs import quantize_kv_fp8

    kv8, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
    out = torch.empty_like(case.q)
    # Half the bytes per page: with the bf16 heuristic's 256 programs the kernel waits on latency (v9: 80 us both,
    # more splits slower). v10t: deeper page pipelines instead (an fp8 page is 32 KiB: 6 stages take the shared
    # memory of 3 bf16 ones), so each program keeps as many bytes in flight as the bf16 kernel does.
    for splits, stages in ((None, 3), (None, 4), (None, 6), (2, 6)):
        name = f"ours, fp8 e4m3 KV cache (graph), splits={splits or 'default'} stages={stages}"
        fn = lambda: sparse_decode_triton(case.q, kv8, sel, case.block_table, case.seq_lens, query_len,  # noqa: E731
                                          HEAD_DIM ** -0.5, out, k_scale=k_scale, v_scale=v_scale, num_splits=splits,
                                          num_stages=stages)
        try:
            fn()
            t = graph_ms(fn) * 1e3
        except Exception as exc:  # noqa: BLE001 - a config that does not fit (shared memory) is a row
            rows.append(Row("decode", shape, name, float("nan"), note=f"{type(exc).__name__}: {str(exc)[:80]}"))
            continue
        rows.append(Row("decode", shape, name, t / 1e3, tb_per_s=nbytes_bf16 / 2 / t / 1e6,
                        note=f"{t_bf16_us / t:.2f}x the bf16 cache; ‖fp8−bf16‖/‖bf16‖ {rel_diff(out, out_bf16):.1e}"))


def reference_tail(case, sel: torch.Tensor, out: torch.Tensor, tail: int = 16) -> float:
    """fp32 reference (kernels/msa/reference.py, on the CPU) for the last ``tail`` tokens of the last request:
    ‖out − ref‖ / ‖ref‖."""
    from kernels.msa import sparse_attention

    qsl = torch.tensor([0, tail], dtype=torch.int32)
    ref = sparse_attention(case.q[-tail:].cpu(), case.kv_cache, sel[:, -tail:].cpu().contiguous(),
                           case.block_table[-1:].cpu(), qsl, case.seq_lens[-1:].cpu())
    return float((out[-tail:].double().cpu() - ref.double()).norm() / ref.double().norm())


def peak_extra_bytes(fn) -> int:  # noqa: ANN001 - a callable launching GPU work
    """Bytes one call of `fn` allocates on the GPU beyond what was allocated before it (its peak)."""
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ in fp32."""
    return float((a.float() - b.float()).norm() / b.float().norm())


@functools.cache
def bench_workspace():  # noqa: ANN201 - a kernels.msa.workspace.PrefillWorkspace (imported on use)
    """The prefill workspace our rows run with, as a server keeps one per device (v14u); one per section (``guarded``
    drops it): the locality rows (KV-outer only, the default, the variants, fp8 cache) and the whole layer; the
    baselines (v6, v9) and the chunked rows (they report each call's peak memory) allocate per call."""
    from kernels.msa.workspace import PrefillWorkspace

    return PrefillWorkspace()


def timed_attention(case, sel: torch.Tensor, **knobs):
    """(callable running our prefill attention into a fixed output, that output)."""
    from kernels.msa.prefill import sparse_attention_triton

    out = torch.empty_like(case.q)
    fn = lambda: sparse_attention_triton(case.q, case.kv_cache, sel, case.block_table, case.query_start_loc,  # noqa: E731
                                         case.seq_lens, HEAD_DIM ** -0.5, out, **knobs)
    fn()
    return fn, out


def vllm_attention(case, sel: torch.Tensor, vllm_sparse):
    out = torch.empty_like(case.q)
    q_lens = case.query_start_loc[1:] - case.query_start_loc[:-1]
    prefix = (case.seq_lens - q_lens).to(torch.int32)
    fn = lambda: vllm_sparse.minimax_m3_sparse_attn(case.q, case.kv_cache, sel, case.block_table,  # noqa: E731
                                                    case.query_start_loc, case.seq_lens, prefix, case.max_query_len,
                                                    KV_HEADS, HEAD_DIM ** -0.5, out)
    fn()
    return fn, out


def vllm_layer(case, n: int, vllm_sparse, vllm_index):
    """(callable running vLLM's whole MSA layer, index_score + topk + sparse_attn, into a fixed output, that output)."""
    args = (case.index_q, case.index_k_cache, case.block_table, case.query_start_loc, case.seq_lens)
    prefix = torch.zeros(case.seq_lens.numel(), dtype=torch.int32, device="cuda")
    out = torch.empty_like(case.q)

    def fn() -> None:
        score = vllm_index.minimax_m3_index_score(*args, prefix, n, n, KV_HEADS)
        sel = vllm_index.minimax_m3_index_topk(score, case.query_start_loc, prefix, n, 16, 0, 1)
        vllm_sparse.minimax_m3_sparse_attn(case.q, case.kv_cache, sel, case.block_table, case.query_start_loc,
                                           case.seq_lens, prefix, n, KV_HEADS, HEAD_DIM ** -0.5, out)

    fn()
    return fn, out


def ours_layer(case, n: int, **knobs):
    """(callable running our whole MSA layer, the indexer then the prefill on its selections with ``knobs``, into a
    fixed output with one workspace kept across calls as a server keeps its own, that output)."""
    from kernels.msa.indexer import msa_index_topk_triton
    from kernels.msa.prefill import sparse_attention_triton

    args = (case.index_q, case.index_k_cache, case.block_table, case.query_start_loc, case.seq_lens)
    out = torch.empty_like(case.q)
    workspace = bench_workspace()

    def fn() -> None:
        sel = msa_index_topk_triton(*args, max_query_len=n)
        sparse_attention_triton(case.q, case.kv_cache, sel, case.block_table, case.query_start_loc, case.seq_lens,
                                HEAD_DIM ** -0.5, out, workspace=workspace, **knobs)

    fn()
    return fn, out


def whole_layer_rows(case, n: int, vllm_sparse, vllm_index, rows: list[Row], label: str,
                     variants: tuple[tuple[str, dict[str, Any]], ...] = (("default", {}),)) -> None:
    """The issue's whole-layer rows (indexer + attention on its own selections, timed as one call each): ours per
    ``variants`` (knobs of sparse_attention_triton) and vLLM's two kernels, in the same run (v12m)."""
    times = {name: bench_ms(ours_layer(case, n, **knobs)[0]) for name, knobs in variants}
    t_v = float("nan")
    if vllm_sparse is not None and vllm_index is not None:
        t_v = bench_ms(vllm_layer(case, n, vllm_sparse, vllm_index)[0])
        rows.append(Row("layer", label, "vLLM whole layer (index_score + topk + sparse_attn)", t_v))
    for name, t in times.items():
        rows.append(Row("layer", label, f"ours whole layer (indexer + attention, {name})", t,
                        note=f"{t_v / t:.2f}x vLLM's layer" if t_v == t_v else ""))


def tile_outer_share(case, sel: torch.Tensor, knobs: dict) -> tuple[float, float]:
    """(share of selection entries computed tile-outer, share of (token, KV head) rows that skip the merge)."""
    from kernels.msa.merge import device_positions, device_requests
    from kernels.msa.tile_outer import tile_unions

    keys = ("union_tile", "max_union", "min_share", "min_shared_pct")
    n = sel.shape[1]
    split = tile_unions(sel, device_requests(case.query_start_loc, n),
                        device_positions(case.query_start_loc, case.seq_lens, n), case.block_table,
                        **{("tile_t" if k == "union_tile" else k): v for k, v in knobs.items() if k in keys})
    shared = float((split.rest < 0).sum() - (sel < 0).sum()) / float((sel >= 0).sum())
    return shared, float(split.direct.float().mean())


ADAPTIVE_VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (  # (label, knobs of sparse_attention_triton)
    ("int8 partials", {"partial_dtype": torch.int8}),
    ("int8 partials, unfused (bf16 carrier side buffer)", {"partial_dtype": torch.int8, "fuse_merge": False}),
    ("KV-outer only + int8 partials", {"max_union": 0, "partial_dtype": torch.int8}),
    ("fused merge", {"fuse_merge": True}),
    ("no gate + fused merge", {"fuse_merge": True, "min_shared_pct": 0}),
    ("tile-outer on the sm_90a CUDA kernel", {"tile_impl": "cuda"}),  # needs nvcc + nvidia-cutlass
    ("CUDA tile-outer + fused merge", {"tile_impl": "cuda", "fuse_merge": True}),
    ("KV-outer on Triton (v11 default)", {"kv_impl": "triton"}),  # the default before v12k's CUDA KV-outer stage
)
"""Options timed against the default (``--locality-variants``: all, or a comma list of these labels). v8's knob
variants (persistent grid, 8 warps x 128 keys) lost to its default in the v8 run (RESULTS.md v8)."""


def chosen_variants(wanted: str) -> list[tuple[str, dict[str, Any]]]:
    """The ADAPTIVE_VARIANTS named in ``wanted`` ("all", "" for none, or a comma list of labels)."""
    if wanted in ("", "all"):
        return list(ADAPTIVE_VARIANTS) if wanted else []
    labels = [w.strip() for w in wanted.split(",")]
    unknown = sorted(set(labels) - {name for name, _ in ADAPTIVE_VARIANTS})
    if unknown:
        raise SystemExit(f"unknown --locality-variants {unknown}; known: {[n for n, _ in ADAPTIVE_VARIANTS]}")
    return [(name, knobs) for name, knobs in ADAPTIVE_VARIANTS if name in labels]


class SectionClock:
    """A time cap per benchmark section: loops ask ``over()`` before each timed row and stop (with a row saying
    so) once the section has used its share, so one slow section cannot eat the call's remaining rows."""

    cap_s: float = 0.0
    start: float = 0.0

    @classmethod
    def begin(cls) -> None:
        cls.start = time.time()

    @classmethod
    def over(cls, rows: list[Row], section: str, shape: str, what: str) -> bool:
        if cls.cap_s <= 0 or time.time() - cls.start < cls.cap_s:
            return False
        rows.append(Row(section, shape, f"skipped from here: {what}", float("nan"),
                        note=f"section cap {cls.cap_s:.0f} s reached"))
        return True


def v7_block_csr(selection: torch.Tensor, query_start_loc: torch.Tensor, max_blocks: int, chunk: int):
    """The CSR build of v6/v7 (int64 radix sort, bincount), kept here as the baseline for today's v6 row: v8's
    build_block_csr sorts 32-bit keys and takes the offsets from the sorted keys."""
    import triton

    from kernels.msa.merge import device_requests

    num_kv_heads, num_tokens, _ = selection.shape
    num_requests = query_start_loc.numel() - 1
    num_segs = num_kv_heads * num_requests * max_blocks
    req = device_requests(query_start_loc, num_tokens)
    head = torch.arange(num_kv_heads, device=selection.device)[:, None, None]
    sel = selection.to(torch.int64)
    seg = torch.where(sel >= 0, (head * num_requests + req[None, :, None]) * max_blocks + sel, num_segs).flatten()
    perm = torch.sort(seg, stable=True).indices.to(torch.int32)
    counts = torch.bincount(seg, minlength=num_segs + 1)[:num_segs]
    row_ptr = torch.zeros(num_segs + 1, dtype=torch.int64, device=selection.device)
    row_ptr[1:] = torch.cumsum(counts, 0)
    chunks = (counts + chunk - 1) // chunk
    work_end = torch.cumsum(chunks, 0)
    w = torch.arange(num_segs + triton.cdiv(seg.numel(), chunk), device=selection.device)
    work_seg = torch.searchsorted(work_end, w, right=True)
    work_chunk = w - (work_end - chunks).gather(0, work_seg.clamp(max=num_segs - 1))
    return perm, row_ptr, work_seg.to(torch.int32), work_chunk.to(torch.int32), num_segs


def v6_today(case, sel: torch.Tensor):
    """(callable, output) of today's default before v8 (v6: KV-outer with the v7 CSR build), the baseline of
    "never slower than today's kernel"."""
    from kernels.msa.merge import device_positions, merge_partials
    from kernels.msa.prefill import kv_outer_partials

    out = torch.empty_like(case.q)

    def run() -> None:
        pos = device_positions(case.query_start_loc, case.seq_lens, sel.shape[1])
        csr = v7_block_csr(sel, case.query_start_loc, case.block_table.shape[1], 128)
        po, plse, _ = kv_outer_partials(case.q, case.kv_cache, case.block_table, case.seq_lens, csr, pos, 16,
                                     HEAD_DIM ** -0.5, 128)
        merge_partials(po, plse, out, sel)

    run()
    return run, out


def v9_default(case, sel: torch.Tensor):
    """(callable, output) of the default before v10t: the adaptive path with the CSR built by a torch sort of the
    split's KV-outer entries (``build_block_csr``), where v10t counts it in the split kernel."""
    from kernels.msa.merge import device_positions, device_requests, merge_partials
    from kernels.msa.prefill import build_block_csr, kv_outer_partials
    from kernels.msa.tile_outer import tile_outer_attention, tile_unions

    out = torch.empty_like(case.q)
    n = sel.shape[1]
    scale = HEAD_DIM ** -0.5

    def run() -> None:
        pos = device_positions(case.query_start_loc, case.seq_lens, n)
        req = device_requests(case.query_start_loc, n)
        split = tile_unions(sel, req, pos, case.block_table)
        csr = build_block_csr(split.rest, case.query_start_loc, case.block_table.shape[1], 128)
        po, plse, _ = kv_outer_partials(case.q, case.kv_cache, case.block_table, case.seq_lens, csr, pos, 16, scale,
                                        128)
        tile_outer_attention(case.q, case.kv_cache, case.seq_lens, pos, req, split, scale, out, po, plse, num_stages=2)
        merge_partials(po, plse, out, split.merge_sel, skip=split.direct)

    run()
    return run, out


def split_csr_stages(case, sel: torch.Tensor, label: str, rows: list[Row]) -> None:
    """v10t stages: the split kernel without and with the CSR counting, the torch CSR build on the KV-outer entries
    against ``csr_from_split``."""
    from kernels.msa.merge import device_positions, device_requests
    from kernels.msa.prefill import build_block_csr, csr_from_split
    from kernels.msa.tile_outer import tile_unions

    n, nb = sel.shape[1], case.block_table.shape[1]
    req = device_requests(case.query_start_loc, n)
    pos = device_positions(case.query_start_loc, case.seq_lens, n)
    t_split = bench_ms(lambda: tile_unions(sel, req, pos, case.block_table), rep_ms=100)
    t_split_csr = bench_ms(lambda: tile_unions(sel, req, pos, case.block_table, csr_blocks=nb), rep_ms=100)
    split = tile_unions(sel, req, pos, case.block_table, csr_blocks=nb)
    t_sort = bench_ms(lambda: build_block_csr(split.rest, case.query_start_loc, nb, 128), rep_ms=100)
    t_count = bench_ms(lambda: csr_from_split(split, req, nb, 128), rep_ms=100)
    kept = float((split.rest >= 0).sum()) / float((sel >= 0).sum())
    rows.append(Row("v10t-stages", label, "split kernel alone / + CSR counting", t_split_csr,
                    note=f"without the counting {t_split:.3f} ms; KV-outer entries {kept:.0%}"))
    rows.append(Row("v10t-stages", label, "CSR from the split's counts (cumsum + scatter)", t_count,
                    note=f"torch sort build on the same entries {t_sort:.3f} ms; split+CSR {t_split_csr + t_count:.3f}"
                         f" vs {t_split + t_sort:.3f} ms"))


def fp8_prefill_row(case, sel: torch.Tensor, label: str, rows: list[Row], flops: float, t_bf16: float,
                    out_v6: torch.Tensor, t_vllm: float | None = None) -> None:
    """Our default prefill on an fp8 e4m3 copy of the cache (per-tensor scales), and with the FP8 step (v18:
    ``fp8_step=True``, sm_90 only; v18z: also with ``fp8_q_terms=2``): time, error against the fp32 reference on the original cache (last 16 tokens),
    difference from the bf16 cache's output, and vLLM's kernel (bf16 cache, same run) over ours."""
    import dataclasses

    from kernels.msa.inputs import quantize_kv_fp8

    kv8, k_scale, v_scale = quantize_kv_fp8(case.kv_cache)
    case8 = dataclasses.replace(case, kv_cache=kv8)
    fn, out = timed_attention(case8, sel, k_scale=k_scale, v_scale=v_scale, workspace=bench_workspace())
    t = bench_ms(fn)
    rows.append(Row("locality", label, "ours default, fp8 e4m3 KV cache", t, flops / t / 1e9,
                    note=f"{t_bf16 / t:.2f}x the bf16 cache; ref err (bf16 cache's reference) "
                         f"{reference_tail(case, sel, out):.1e}; ‖fp8−v6 bf16‖/‖v6‖ {rel_diff(out, out_v6):.1e}"))
    from kernels.msa import cuda

    for q_terms, impl in ((1, "ours, FP8 step, fp8 e4m3 KV cache"),
                          (2, "ours, FP8 step with Q as two e4m3 terms (fp8_q_terms=2), fp8 e4m3 KV cache")):
        if cuda.device_reason(case.q.device) is not None:
            break
        fn, out = timed_attention(case8, sel, k_scale=k_scale, v_scale=v_scale, workspace=bench_workspace(),
                                  fp8_step=True, fp8_q_terms=q_terms)
        t = bench_ms(fn)
        vs_vllm = f"vLLM {t_vllm / t:.2f}x slower; " if t_vllm is not None else ""
        rows.append(Row("locality", label, impl, t, flops / t / 1e9,
                        note=f"{t_bf16 / t:.2f}x the bf16 cache; {vs_vllm}ref err (bf16 cache's reference) "
                             f"{reference_tail(case, sel, out):.1e}"))
    del kv8, case8


def bench_locality(n: int, vllm_sparse, vllm_index, rows: list[Row], gemm_tflops: float, variants: str = "",
                   stages: bool = False, kinds_wanted: str = "", fp8: bool = False) -> None:
    """One N-token prefill; selections from the indexer on random inputs and synthetic f = 0.5 / 0.9 / 1.0
    (local block in slot 0: vLLM's contract). Every row: today's v6 (with the v7 CSR build), KV-outer only, the
    default before v10t (torch CSR), the default, the chosen options, vLLM, the fp32 check, the whole layer
    (indexer + attention, sum of the two timed stages), and the v10t split/CSR stages with a repeat of the two
    defaults (the run's noise)."""
    from kernels.msa.inputs import local_selection, make_case
    from kernels.msa.merge import device_positions

    shape = f"N={n // 1024}K"
    case = make_case([n], [n], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=n)
    sel_idx = bench_indexer(case, vllm_index, rows, n, gemm_tflops)
    t_idx = rows[-2].time_ms if vllm_index is not None else rows[-1].time_ms
    t_idx_v = rows[-1].time_ms if vllm_index is not None else float("nan")
    pos = device_positions(case.query_start_loc, case.seq_lens, n)
    kinds = [("indexer sel", sel_idx)] + [
        (f"f={f}", local_selection(case.query_start_loc, case.seq_lens, KV_HEADS, f, seed=n + int(f * 10)))
        for f in (0.5, 0.9, 1.0)]
    for kind, sel in kinds:
        if kinds_wanted and kind not in kinds_wanted.split(","):
            continue
        flops = attention_flops(sel, pos)
        label = f"{shape} {kind}"
        if SectionClock.over(rows, "locality", label, "this selection"):
            return
        fn0, out0 = v6_today(case, sel)
        t0 = bench_ms(fn0)
        rows.append(Row("locality", label, "v6 (v7 CSR build)", t0, flops / t0 / 1e9,
                        note=f"floor {flops / gemm_tflops / 1e9:.2f} ms; layer {t_idx + t0:.2f} ms"))
        fn6, out6 = timed_attention(case, sel, max_union=0, workspace=bench_workspace())
        t6 = bench_ms(fn6)
        rows.append(Row("locality", label, "ours KV-outer only (max_union=0)", t6, flops / t6 / 1e9,
                        note=f"{t0 / t6:.2f}x v6; vs v6 {rel_diff(out6, out0):.1e}; layer {t_idx + t6:.2f} ms"))
        fn9, out9 = v9_default(case, sel)
        t9 = bench_ms(fn9)
        rows.append(Row("locality", label, "v9 default (adaptive, torch CSR)", t9, flops / t9 / 1e9,
                        note=f"{t0 / t9:.2f}x v6; vs v6 {rel_diff(out9, out0):.1e}; layer {t_idx + t9:.2f} ms"))
        fn_def, out = timed_attention(case, sel, workspace=bench_workspace())
        t7 = bench_ms(fn_def)
        share, direct = tile_outer_share(case, sel, {})
        rows.append(Row("locality", label, "ours: default (adaptive, split-counted CSR)", t7, flops / t7 / 1e9,
                        note=f"{t9 / t7:.2f}x v9 default, {t0 / t7:.2f}x v6; tile-outer {share:.0%} of entries, "
                             f"{direct:.0%} rows unmerged; ref err {reference_tail(case, sel, out):.1e}; "
                             f"vs v9 {rel_diff(out, out9):.1e}; layer {t_idx + t7:.2f} ms"))
        for name, knobs in chosen_variants(variants):
            if SectionClock.over(rows, "locality", label, name):
                return
            fn, out = timed_attention(case, sel, workspace=bench_workspace(), **knobs)
            t = bench_ms(fn)
            check = f"ref err {reference_tail(case, sel, out):.1e}; " if "partials" in name else ""
            rows.append(Row("locality", label, name, t, flops / t / 1e9,
                            note=f"{t7 / t:.2f}x default, {t6 / t:.2f}x KV-outer only; {check}"
                                 f"vs v6 {rel_diff(out, out0):.1e}; layer {t_idx + t:.2f} ms"))
        if vllm_sparse is not None:
            fnv, outv = vllm_attention(case, sel, vllm_sparse)
            tv = bench_ms(fnv)
            diff = float((out6.float() - outv.float()).norm() / outv.float().norm())
            rows.append(Row("locality", label, "vLLM query-outer (Hopper Triton)", tv, flops / tv / 1e9,
                            note=f"default {tv / t7:.2f}x, v6 {tv / t0:.2f}x faster; ‖ours−vLLM‖/‖vLLM‖ "
                                 f"{diff:.1e}; layer {t_idx_v + tv:.2f} ms (vLLM indexer)"))
        if kind == "indexer sel" and not SectionClock.over(rows, "locality", label, "whole layer"):
            whole_layer_rows(case, n, vllm_sparse, vllm_index, rows, label)
        if fp8 and not SectionClock.over(rows, "locality", label, "fp8 KV cache"):
            fp8_prefill_row(case, sel, label, rows, flops, t7, out0, tv if vllm_sparse is not None else None)
        if SectionClock.over(rows, "locality", label, "v10t stages"):
            return
        split_csr_stages(case, sel, label, rows)
        for name, f in (("v9 default (adaptive, torch CSR), repeat", fn9), ("ours: default, repeat", fn_def)):
            rows.append(Row("v10t-stages", label, name, bench_ms(f)))
        if stages and n >= 131072:
            locality_stages(case, sel, label, rows, flops)
        torch.cuda.empty_cache()


FP8_INDEXER_CONFIGS = ((128, 3, 8), (128, 4, 8), (128, 2, 8), (128, 3, 4), (256, 2, 8), (256, 3, 8), (64, 3, 4))
"""(MMA rows per program, stages, warps) the v13r sweep times for the fp8 pair (kernels.msa.indexer._launch)."""


def selection_agreement(got: torch.Tensor, want: torch.Tensor) -> tuple[float, float]:
    """(share of (head, token) rows whose selected set equals, share of ``want``'s valid ids also in ``got``)."""
    same = (got.sort(-1).values == want.sort(-1).values).all(-1).float().mean().item()
    shared = ((want[..., :, None] == got[..., None, :]) & (want[..., :, None] >= 0)).sum().item()
    return same, shared / max(1, int((want >= 0).sum()))


def reference_sample(case, sel: torch.Tensor, n: int, tail: int) -> tuple[float, float]:
    """Agreement of ``sel`` with the fp32 reference (kernels/msa/reference.py, on the CPU) over the last ``tail``
    tokens (about n / 128 visible blocks each: a real choice; one request, so the keys are gathered once)."""
    from kernels.msa import msa_index_topk

    qsl = torch.tensor([0, tail], dtype=torch.int32)
    ref = msa_index_topk(case.index_q[-tail:].cpu(), case.index_k_cache.cpu(), case.block_table.cpu(), qsl,
                         case.seq_lens.cpu())
    return selection_agreement(sel[:, -tail:].cpu(), ref)


def bench_fp8_indexer(n: int, vllm_sparse, vllm_index, rows: list[Row], gemm_tflops: float, sweep: bool,
                      samples: int = 512) -> None:
    """v13r: the indexer on e4m3 index q + e4m3 index cache (vLLM's `indexer_kv_dtype="fp8"`: plain casts, no
    scale) against vLLM's fp8 indexer and our bf16 indexer in the same run; selection agreement with the fp32
    reference on the same e4m3 values and with the bf16 selection of the unquantised inputs; the whole layer
    (indexer + default attention) with each; ``sweep``: the fp8 tile configurations."""
    import dataclasses

    from kernels.msa import indexer
    from kernels.msa.inputs import make_case

    shape = f"N={n // 1024}K"
    case = make_case([n], [n], HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=n)
    sel16 = bench_indexer(case, vllm_index, rows, n, gemm_tflops, tag=" (bf16)")
    t16 = next(r.time_ms for r in reversed(rows) if r.impl.startswith("ours: fused") and r.shape == shape)
    e4m3 = torch.float8_e4m3fn
    case8 = dataclasses.replace(case, index_q=case.index_q.to(e4m3), index_k_cache=case.index_k_cache.to(e4m3))
    sel8 = bench_indexer(case8, vllm_index, rows, n, gemm_tflops, tag=" (fp8 e4m3)")
    t8 = next(r.time_ms for r in reversed(rows) if r.impl.startswith("ours: fused") and r.shape == shape)
    score_flops = KV_HEADS * 2 * HEAD_DIM * 128 * sum(p // 128 + 1 for p in range(0, n, 128)) * 128
    real = torch.arange(n, device=sel16.device) >= 2048  # tokens with a real choice (more than 16 visible blocks)
    same_bf16, overlap_bf16 = selection_agreement(sel8[:, real], sel16[:, real])
    same_ref8, overlap_ref8 = reference_sample(case8, sel8, n, samples)
    same_ref16, overlap_ref16 = reference_sample(case, sel16, n, samples)
    rows.append(Row("indexer", shape, "ours fp8 vs ours bf16 / fp32 references", t8,
                    note=f"{t16 / t8:.2f}x ours bf16; floor at the fp8 rate {score_flops / (2 * gemm_tflops) / 1e9:.2f}"
                         f" ms (bf16 GEMM x2); fp8 sel = fp32 ref on the same e4m3 values: {same_ref8:.2%} rows "
                         f"({overlap_ref8:.2%} of ids; last {samples} tokens), bf16 sel = its ref {same_ref16:.2%} "
                         f"({overlap_ref16:.2%}); fp8 sel = bf16 sel of the unquantised inputs {same_bf16:.2%} rows "
                         f"({overlap_bf16:.2%} of ids; every token at >= 2048)"))
    whole_layer_rows(case, n, vllm_sparse, vllm_index, rows, f"{shape} indexer sel (bf16 index)")
    whole_layer_rows(case8, n, vllm_sparse, vllm_index, rows, f"{shape} indexer sel (fp8 e4m3 index)")
    if sweep:
        args = (case8.index_q, case8.index_k_cache, case.block_table, case.query_start_loc, case.seq_lens)
        out = torch.empty_like(sel8)
        times: dict[tuple[int, int, int], list[float]] = {}
        for repeat in range(2):  # interleaved twice: the run's noise next to the configurations' differences
            for cfg in FP8_INDEXER_CONFIGS:
                fn = lambda cfg=cfg: indexer._launch(*args, out, 16, 0, 1, n, *cfg)  # noqa: E731
                fn()
                if repeat == 0 and not torch.equal(out, sel8):
                    rows.append(Row("indexer", shape, f"fp8 config {cfg} differs from the default", float("nan")))
                times.setdefault(cfg, []).append(bench_ms(fn))
        for cfg, ts in times.items():
            rows.append(Row("indexer", shape, f"ours fp8, rows x stages x warps = {cfg}", min(ts),
                            score_flops / min(ts) / 1e9, note=f"runs {', '.join(f'{t:.2f}' for t in ts)} ms"
                                                              f"{' (default)' if cfg == indexer.FP8_CONFIG else ''}"))
    del case8, case
    torch.cuda.empty_cache()


TILE_OUTER_STAGE_CONFIGS = (  # (warps, stages, keys, clean loop, programs per SM (0: one per tile), warp spec.)
    (4, 2, 64, True, 2, False), (4, 2, 64, True, 0, False), (4, 2, 64, False, 0, False), (8, 3, 128, True, 2, False),
    (8, 3, 128, True, 0, False), (4, 2, 64, True, 2, True), (8, 3, 128, True, 2, True),
)


def locality_stages(case, sel: torch.Tensor, label: str, rows: list[Row], flops: float) -> None:
    """Stages of the adaptive path alone (split kernel, tile-outer kernel and its knobs with its registers, spills
    and shared memory, CSR builds, KV-outer, merge)."""
    from kernels.msa.merge import device_positions, device_requests, merge_partials
    from kernels.msa.prefill import build_block_csr, kv_outer_partials
    from kernels.msa.tile_outer import tile_outer_attention, tile_unions

    n = case.q.shape[0]
    req = device_requests(case.query_start_loc, n)
    pos = device_positions(case.query_start_loc, case.seq_lens, n)
    for warps in (2, 4):
        t = bench_ms(lambda: tile_unions(sel, req, pos, case.block_table, num_warps=warps), rep_ms=100)
        rows.append(Row("v8-stages", label, f"split kernel (tile_unions) warps={warps}", t))
    split = tile_unions(sel, req, pos, case.block_table)
    po = torch.empty((KV_HEADS, n, 16, HEADS // KV_HEADS, HEAD_DIM), dtype=case.q.dtype, device="cuda")
    plse = torch.empty((KV_HEADS, n, 16, HEADS // KV_HEADS), dtype=torch.float32, device="cuda")
    out = torch.empty_like(case.q)
    shared_keys = float((split.rest < 0).sum() - (sel < 0).sum()) / float((sel >= 0).sum())
    union_blocks = torch.where(split.union_size <= split.union.shape[2], split.union_size, 0).sum()
    clean = float(split.clean.sum()) / max(1.0, float(union_blocks))
    for warps, stages, keys, use_clean, per_sm, spec in TILE_OUTER_STAGE_CONFIGS:
        name = (f"tile-outer warps={warps} stages={stages} keys={keys} clean={int(use_clean)} per_sm={per_sm}"
                + (" warp-specialised" if spec else ""))
        try:
            def fn():
                return tile_outer_attention(case.q, case.kv_cache, case.seq_lens, pos, req, split, HEAD_DIM ** -0.5,
                                            out, po, plse, num_warps=warps, num_stages=stages, keys=keys,
                                            use_clean=use_clean, per_sm=per_sm, warp_specialize=spec)
            k = fn()
            t = bench_ms(fn, rep_ms=100)
            info = (f"{k.n_regs} regs, {k.n_spills} spills, {k.metadata.shared // 1024} KiB smem"
                    if k is not None else "")
            rows.append(Row("v8-stages", label, name, t, flops * shared_keys / t / 1e9,
                            note=f"TFLOP/s of the shared entries' keys; {info}; clean blocks {clean:.0%}"))
        except Exception as exc:  # noqa: BLE001 - a config that does not compile is a row
            rows.append(Row("v8-stages", label, name, float("nan"), note=f"{type(exc).__name__}: {str(exc)[:80]}"))
    nb = case.block_table.shape[1]
    for name, build in (("v8 CSR build (32-bit keys, offsets by search)", build_block_csr),
                        ("v7 CSR build (64-bit keys, bincount)", v7_block_csr)):
        for what, s in (("all entries", sel), ("KV-outer entries", split.rest)):
            t = bench_ms(lambda: build(s, case.query_start_loc, nb, 128), rep_ms=100)
            rows.append(Row("v8-stages", label, f"{name} on {what}", t))
    csr = build_block_csr(split.rest, case.query_start_loc, nb, 128)
    t = bench_ms(lambda: kv_outer_partials(case.q, case.kv_cache, case.block_table, case.seq_lens, csr, pos, 16,
                                           HEAD_DIM ** -0.5, 128), rep_ms=100)
    rows.append(Row("v8-stages", label, "KV-outer kernel on the rest", t))
    kv_outer_ab(case, sel, label, rows)
    t = bench_ms(lambda: merge_partials(po, plse, out, split.merge_sel, skip=split.direct), rep_ms=100)
    rows.append(Row("v8-stages", label, "merge (present parts, direct rows skipped)", t))


def kv_outer_ab(case, sel: torch.Tensor, label: str, rows: list[Row]) -> None:
    """KV-outer only, today's CSR build against v8's: same permutation? kernel alone with each; the two whole
    paths timed twice, interleaved (to tell a real difference from drift)."""
    from kernels.msa.merge import device_positions
    from kernels.msa.prefill import build_block_csr, kv_outer_partials

    nb = case.block_table.shape[1]
    pos = device_positions(case.query_start_loc, case.seq_lens, sel.shape[1])
    old = v7_block_csr(sel, case.query_start_loc, nb, 128)
    new = build_block_csr(sel, case.query_start_loc, nb, 128)
    same = all(torch.equal(a.long(), b.long()) for a, b in zip(old[:4], new[:4], strict=True))
    for name, csr in (("v7 CSR", old), ("v8 CSR", new)):
        t = bench_ms(lambda: kv_outer_partials(case.q, case.kv_cache, case.block_table, case.seq_lens, csr, pos, 16,
                                               HEAD_DIM ** -0.5, 128), rep_ms=100)
        rows.append(Row("v8-stages", label, f"KV-outer kernel, all entries, {name}", t,
                        note=f"CSR tensors identical: {same}"))
    fn0, _ = v6_today(case, sel)
    fn6, _ = timed_attention(case, sel, max_union=0)
    for rep in range(2):
        for name, fn in (("today's default (v6, v7 CSR build)", fn0), ("v8 KV-outer only (max_union=0)", fn6)):
            rows.append(Row("v8-stages", label, f"{name}, interleaved run {rep + 1}", bench_ms(fn)))


def bench_chunked(chunk: int, ctx: int, decodes: int, vllm_sparse, rows: list[Row], gemm_tflops: float) -> None:
    """One ``chunk``-token prefill chunk after ``ctx`` cached tokens (plus ``decodes`` decode requests at 128K
    context, batched first); selection from our indexer on random inputs. Peak extra memory of each call."""
    from kernels.msa.indexer import msa_index_topk_triton
    from kernels.msa.inputs import make_case
    from kernels.msa.merge import device_positions

    shape = f"chunk={chunk // 1024}K ctx={ctx // 1024}K" + (f" +{decodes} dec@128K" if decodes else "")
    seq = [131072] * decodes + [ctx + chunk]
    ql = [1] * decodes + [chunk]
    case = make_case(seq, ql, HEADS, KV_HEADS, HEAD_DIM, torch.bfloat16, "cuda", seed=ctx + chunk + decodes)
    args = (case.index_q, case.index_k_cache, case.block_table, case.query_start_loc, case.seq_lens)
    sel = msa_index_topk_triton(*args, max_query_len=chunk)
    t_idx = bench_ms(lambda: msa_index_topk_triton(*args, max_query_len=chunk))
    pos = device_positions(case.query_start_loc, case.seq_lens, sum(ql))
    flops = attention_flops(sel, pos)
    rows.append(Row("chunked", shape, "ours indexer (fused)", t_idx))
    results = []
    runs = (("v9 default (adaptive, torch CSR)", lambda: v9_default(case, sel)),
            ("ours: default (adaptive, split-counted CSR)", lambda: timed_attention(case, sel)),
            ("int8 partials", lambda: timed_attention(case, sel, partial_dtype=torch.int8)))
    for name, make in runs:
        if SectionClock.over(rows, "chunked", shape, name):
            return
        fn, out = make()
        extra = peak_extra_bytes(fn)
        t = bench_ms(fn)
        results.append((t, out))
        vs = f"{results[0][0] / t:.2f}x v9 default; " if results[1:] else ""
        rows.append(Row("chunked", shape, name, t, flops / t / 1e9,
                        note=f"{vs}peak extra memory {extra / 2 ** 30:.2f} GiB; layer {t_idx + t:.2f} ms; ref err "
                             f"(last 16 tok) {reference_tail(case, sel, out):.1e}"))
    if vllm_sparse is not None:
        fnv, outv = vllm_attention(case, sel, vllm_sparse)
        extra = peak_extra_bytes(fnv)
        tv = bench_ms(fnv)
        diff = float((results[1][1].float() - outv.float()).norm() / outv.float().norm())
        rows.append(Row("chunked", shape, "vLLM query-outer (Hopper Triton)", tv, flops / tv / 1e9,
                        note=f"ours {tv / results[1][0]:.2f}x; ‖ours−vLLM‖/‖vLLM‖ {diff:.1e}; "
                             f"peak extra memory {extra / 2 ** 30:.2f} GiB; layer {t_idx + tv:.2f} ms (our indexer)"))
    rows.append(Row("chunked", shape, "KV cache + index cache (bf16)", float("nan"),
                    note=f"{(case.kv_cache.numel() + case.index_k_cache.numel()) * 2 / 2 ** 30:.1f} GiB"))


def guarded(rows: list[Row], section: str, shape: str, fn, *args, **kwargs) -> None:
    """Run one benchmark section (under its ``SectionClock`` cap); a failure becomes a row (the rest of the run
    still counts)."""
    import traceback

    SectionClock.begin()
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - recorded in the table, the run goes on
        traceback.print_exc()
        rows.append(Row(section, shape, "FAILED", float("nan"), note=f"{type(exc).__name__}: {str(exc)[:100]}"))
    bench_workspace.cache_clear()  # the next section starts without this one's workspace (34 GB at 128K)
    torch.cuda.empty_cache()


class PrintedRows(list):
    """The table's rows, each printed as it is added: a run stopped by a time limit keeps what it measured (the
    v9 run lost a whole 128K section that printed only at the section's end)."""

    jsonl: Path | None = None
    """Each row is also appended here as one JSON line (a run killed by its time limit keeps them)."""

    @classmethod
    def writing_to(cls, jsonl: Path | None) -> PrintedRows:
        """Rows that are also appended to ``jsonl`` (its folder made), or only printed when it is None."""
        rows = cls()
        if jsonl is not None:
            jsonl.parent.mkdir(parents=True, exist_ok=True)
            rows.jsonl = jsonl
        return rows

    def append(self, row: Row) -> None:
        print(row, flush=True)
        if self.jsonl is not None:
            with self.jsonl.open("a") as f:
                f.write(json.dumps(asdict(row)) + "\n")
        super().append(row)


def print_table(rows: list[Row], header: str) -> None:
    print("\n" + header)
    print("| section | shape | implementation | time | TFLOP/s | TB/s | note |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        time_s = f"{r.time_ms * 1e3:.0f} us" if r.time_ms < 1 else f"{r.time_ms:.2f} ms"
        tf = f"{r.tflops:.0f}" if r.tflops is not None else ""
        bw = f"{r.tb_per_s:.2f}" if r.tb_per_s is not None else ""
        print(f"| {r.section} | {r.shape} | {r.impl} | {time_s} | {tf} | {bw} | {r.note} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16384,65536,131072", help="prefill lengths N")
    parser.add_argument("--decode", default="16x32768,16x131072,64x32768,64x131072", help="batch x context")
    parser.add_argument("--vllm-ops", type=Path, default=Path(".bench-vendor"))
    parser.add_argument("--flex-max", type=int, default=65536, help="FlexAttention only up to this N")
    parser.add_argument("--no-dense", action="store_true")
    parser.add_argument("--sweep", action="store_true", help="also sweep kernel knobs at 64K / B=64x128K")
    parser.add_argument("--locality", default="", help="prefill lengths for the locality sweep (e.g. 32768,131072)")
    parser.add_argument("--locality-variants", nargs="?", const="all", default="",
                        help="also these options per row: all, or a comma list of ADAPTIVE_VARIANTS labels")
    parser.add_argument("--section-cap-s", type=float, default=0.0,
                        help="stop a section's remaining rows after this many seconds (0: no cap)")
    parser.add_argument("--locality-stages", action="store_true", help="also time the v8 stages alone")
    parser.add_argument("--locality-kinds", default="", help="only these selections, e.g. 'indexer sel,f=1.0'")
    parser.add_argument("--chunked", default="", help="chunk x context[+decodes], e.g. 8192x131072,32768x1048576+16")
    parser.add_argument("--fp8", action="store_true", help="also our decode and prefill on an fp8 e4m3 KV cache")
    parser.add_argument("--fp8-indexer", default="", help="v13r: fp8 e4m3 index rows at these N (e.g. 32768,131072)")
    parser.add_argument("--fp8-indexer-sweep", action="store_true", help="with --fp8-indexer: tile configs at 128K")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import triton

    from kernels.bench.vllm_standin import load_vllm_ops

    vllm_sparse, vllm_index = load_vllm_ops(args.vllm_ops) if args.vllm_ops.is_dir() else (None, None)
    copy_tbs, gemm_tflops = ceilings()
    print(f"copy {copy_tbs:.2f} TB/s, GEMM {gemm_tflops:.0f} TFLOP/s", flush=True)
    chosen_variants(args.locality_variants)  # an unknown label ends the run here, before any GPU work
    SectionClock.cap_s = args.section_cap_s
    rows = PrintedRows()
    if args.json:
        rows.jsonl = args.json.with_suffix(".jsonl")
    for i, spec in enumerate(s for s in args.decode.split(",") if s):
        batch, ctx = (int(x) for x in spec.split("x"))
        guarded(rows, "decode", spec, bench_decode, batch, ctx, vllm_sparse, rows, copy_tbs, check=i == 0,
                sweep=spec == "64x131072" and args.sweep, fp8=args.fp8)
    guarded(rows, "decode", "64x131072 q=2", bench_decode, 64, 131072, vllm_sparse, rows, copy_tbs, check=True,
            query_len=2)
    for n in (int(s) for s in args.sizes.split(",") if s):
        guarded(rows, "prefill", str(n), bench_prefill, n, vllm_sparse, vllm_index, args.flex_max,
                not args.no_dense, rows, gemm_tflops, check=n <= 16384, sweep=args.sweep and n == 65536)
    for n in (int(x) for x in args.locality.split(",") if x):
        guarded(rows, "locality", str(n), bench_locality, n, vllm_sparse, vllm_index, rows, gemm_tflops,
                args.locality_variants, args.locality_stages, args.locality_kinds, args.fp8)
    for n in (int(x) for x in args.fp8_indexer.split(",") if x):
        guarded(rows, "indexer", f"{n} fp8", bench_fp8_indexer, n, vllm_sparse, vllm_index, rows, gemm_tflops,
                args.fp8_indexer_sweep and n >= 131072)
    for spec in (x for x in args.chunked.split(",") if x):
        sizes, _, dec = spec.partition("+")
        chunk, ctx = (int(x) for x in sizes.split("x"))
        guarded(rows, "chunked", spec, bench_chunked, chunk, ctx, int(dec or 0), vllm_sparse, rows, gemm_tflops)
    header = (f"{torch.cuda.get_device_name()} | torch {torch.__version__} | triton {triton.__version__} | "
              f"{time.strftime('%Y-%m-%d', time.gmtime())} | copy {copy_tbs:.2f} TB/s (read+write) | "
              f"bf16 GEMM {gemm_tflops:.0f} TFLOP/s")
    if args.json:
        args.json.write_text(json.dumps({"header": header, "rows": [asdict(r) for r in rows]}, indent=1))
    print_table(rows, header)


if __name__ == "__main__":
    main()
