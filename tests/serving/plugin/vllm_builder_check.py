"""Run INSIDE the vLLM venv (by test_vllm_plugin.py): our MSA impls fed with metadata from vLLM's own builders.

One mixed batch, decode-first as vLLM orders it: two decodes, a chunked prefill with 256 tokens of context, a fresh
prefill; pages shuffled; top-k 2 over up to 5 blocks (pruning). Expected values come from the MSA reference run per
request on an identity page layout, so what is checked is the plumbing: vLLM's split, rebased offsets, context
lengths, block tables, the token-major selection buffer. Prints JSON.
Usage: python vllm_builder_check.py MODEL_DIR
"""
from __future__ import annotations

import dataclasses
import json
import sys
from types import SimpleNamespace

import torch

BLOCK, HEAD_DIM, KV_HEADS, HEADS, TOP_K = 128, 128, 2, 4, 2
# (context tokens, new tokens) per request, decode-first
REQUESTS = [(300, 1), (519, 1), (256, 200), (0, 300)]


def vllm_config(model_dir: str, additional_config: dict | None = None):  # noqa: ANN201
    from vllm.engine.arg_utils import EngineArgs

    args = EngineArgs(model=model_dir, dtype="bfloat16", block_size=BLOCK, max_model_len=2048,
                      max_num_batched_tokens=1024, enforce_eager=True, additional_config=additional_config or {})
    return args.create_engine_config()


def paged(seq_lens: list[int], pages: int, g: torch.Generator) -> torch.Tensor:
    """Block table with shuffled pages, one row per request."""
    perm = torch.randperm(pages, generator=g)
    width = max((s + BLOCK - 1) // BLOCK for s in seq_lens)
    table = torch.zeros(len(seq_lens), width, dtype=torch.int32)
    used = 0
    for r, s in enumerate(seq_lens):
        nb = (s + BLOCK - 1) // BLOCK
        table[r, :nb] = perm[used:used + nb].to(torch.int32)
        used += nb
    return table


def common_metadata(seq_lens: list[int], q_lens: list[int], table: torch.Tensor):  # noqa: ANN201
    from vllm.v1.attention.backend import CommonAttentionMetadata

    qsl = torch.tensor([0, *torch.tensor(q_lens).cumsum(0).tolist()], dtype=torch.int32)
    sl = torch.tensor(seq_lens, dtype=torch.int32)
    slots = []
    for r, (s, q) in enumerate(zip(seq_lens, q_lens, strict=True)):
        for p in range(s - q, s):
            slots.append(int(table[r, p // BLOCK]) * BLOCK + p % BLOCK)
    return CommonAttentionMetadata(
        query_start_loc=qsl, query_start_loc_cpu=qsl.clone(), seq_lens=sl, num_reqs=len(seq_lens),
        num_actual_tokens=int(qsl[-1]), max_query_len=max(q_lens), max_seq_len=max(seq_lens),
        block_table_tensor=table, slot_mapping=torch.tensor(slots, dtype=torch.int64),
        seq_lens_cpu_upper_bound=sl.clone(),
    )


def single_process_groups() -> None:
    """vLLM's TP/PP groups for one process (the builders ask for the TP world size)."""
    import socket

    from vllm.distributed import init_distributed_environment, initialize_model_parallel

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    init_distributed_environment(world_size=1, rank=0, local_rank=0,
                                 distributed_init_method=f"tcp://127.0.0.1:{port}", backend="gloo")
    initialize_model_parallel(1, 1)


def refused_options(model_dir: str) -> dict[str, str | None]:
    """Our engine options (``--additional-config '{"m3lab_msa": ...}'``) where this process cannot honour them: the
    impl (or, for vLLM's own impl, the selection hook) refuses them at model load; the error text per case."""
    from vllm.config import set_current_vllm_config

    import serving.plugin.impls as impls
    from serving.plugin import install
    from serving.plugin.selection import Implementation, Selection

    def attempt(make) -> str | None:  # noqa: ANN001
        try:
            make()
        except ValueError as exc:
            return str(exc)
        return None

    fp8_step = {"m3lab_msa": {"fp8_step": True}}
    cases = {
        "bf16_cache": (fp8_step, lambda: impls.TorchMSASparseImpl(HEADS, HEAD_DIM, HEAD_DIM ** -0.5, KV_HEADS, "auto",
                                                                   topk_blocks=TOP_K, sparse_block_size=BLOCK)),
        "cpu_reference": (fp8_step, lambda: impls.TorchMSASparseImpl(HEADS, HEAD_DIM, HEAD_DIM ** -0.5, KV_HEADS,
                                                                      "fp8", topk_blocks=TOP_K, sparse_block_size=BLOCK)),
        "typo": ({"m3lab_msa": {"fp8_stepp": True}}, lambda: impls.TorchMSASparseImpl(
            HEADS, HEAD_DIM, HEAD_DIM ** -0.5, KV_HEADS, "fp8", topk_blocks=TOP_K, sparse_block_size=BLOCK)),
        "vllm_impl": (fp8_step, lambda: install._refuse_options_for_vllm_impl(
            Selection(Implementation.VLLM, "CUDA capability (10, 0): not SM90, vLLM's own choice"))),
        "none_asked": ({"other_plugin": {"x": 1}}, lambda: install._refuse_options_for_vllm_impl(
            Selection(Implementation.VLLM, "CUDA capability (10, 0): not SM90, vLLM's own choice"))),
    }
    refusals = {}
    for name, (config, make) in cases.items():
        with set_current_vllm_config(vllm_config(model_dir, config)):
            refusals[name] = attempt(make)
    return refusals


def main(model_dir: str) -> dict:
    from vllm.plugins import load_general_plugins

    load_general_plugins()  # our plugin: the CPU build needs it to import M3's modules at all
    from vllm.config import set_current_vllm_config
    from vllm.models.minimax_m3.common.indexer import MiniMaxM3IndexerTritonMetadataBuilder
    from vllm.models.minimax_m3.common.sparse_attention import MiniMaxM3SparseMetadataBuilder
    from vllm.v1.kv_cache_interface import FullAttentionSpec, MLAAttentionSpec

    import serving.plugin.impls as impls
    from serving.plugin import msa_calls

    class WorkspaceImpl(impls.TorchMSASparseImpl):
        """The CPU impl with a workspace, as the Triton one has (its __init__ would build the CUDA library)."""

        kernels = dataclasses.replace(msa_calls.REFERENCE, workspace=True)
    from kernels.msa import reference
    from kernels.msa.inputs import dequantize_kv_fp8, quantize_kv_fp8

    g = torch.Generator().manual_seed(0)
    seq_lens = [c + q for c, q in REQUESTS]
    q_lens = [q for _, q in REQUESTS]
    pages = sum((s + BLOCK - 1) // BLOCK for s in seq_lens) + 3
    table = paged(seq_lens, pages, g)
    kv_cache = torch.randn(pages, KV_HEADS, BLOCK, 2 * HEAD_DIM, generator=g).bfloat16()
    index_cache = torch.randn(pages, BLOCK, HEAD_DIM, generator=g).bfloat16()
    n = sum(q_lens)
    q = torch.randn(n, HEADS * HEAD_DIM, generator=g).bfloat16()
    iq = torch.randn(n, KV_HEADS * HEAD_DIM, generator=g).bfloat16()
    cm = common_metadata(seq_lens, q_lens, table)
    vc = vllm_config(model_dir)
    with set_current_vllm_config(vc):
        single_process_groups()
        main_spec = FullAttentionSpec(block_size=BLOCK, num_kv_heads=KV_HEADS, head_size=HEAD_DIM,
                                      head_size_v=HEAD_DIM, dtype=torch.bfloat16)
        index_spec = MLAAttentionSpec(block_size=BLOCK, num_kv_heads=1, head_size=HEAD_DIM, dtype=torch.bfloat16)
        md = MiniMaxM3SparseMetadataBuilder(main_spec, ["t.attn"], vc, torch.device("cpu")).build(0, cm)
        imd = MiniMaxM3IndexerTritonMetadataBuilder(index_spec, ["t.attn.index_cache"], vc,
                                                    torch.device("cpu")).build(0, cm)
        buf = torch.full((n + 3, KV_HEADS, TOP_K), -7, dtype=torch.int32)
        indexer = impls.TorchMSAIndexerImpl(
            num_kv_heads=KV_HEADS, scale=HEAD_DIM ** -0.5, topk_blocks=TOP_K, sparse_block_size=BLOCK,
            num_index_heads=KV_HEADS, index_head_dim=HEAD_DIM, prefix="t.attn", local_blocks=1,
            topk_indices_buffer=buf,
        )
        indexer.index_cache.kv_cache = index_cache
        attend = impls.TorchMSASparseImpl(HEADS, HEAD_DIM, HEAD_DIM ** -0.5, KV_HEADS, "auto",
                                          topk_blocks=TOP_K, sparse_block_size=BLOCK)
        attend8 = impls.TorchMSASparseImpl(HEADS, HEAD_DIM, HEAD_DIM ** -0.5, KV_HEADS, "fp8",
                                           topk_blocks=TOP_K, sparse_block_size=BLOCK)
        reserving = WorkspaceImpl(HEADS, HEAD_DIM, HEAD_DIM ** -0.5, KV_HEADS, "fp8", topk_blocks=TOP_K,
                                  sparse_block_size=BLOCK)
    impls.get_forward_context = lambda: SimpleNamespace(attn_metadata={"t.attn": md, "t.attn.index_cache": imd})
    indexer(iq)
    out = torch.zeros(n, HEADS * HEAD_DIM, dtype=torch.bfloat16)
    layer = SimpleNamespace(layer_name="t.attn", topk_indices_buffer=buf)
    attend.forward(layer, q, kv_cache, out)
    # --kv-cache-dtype fp8: vLLM hands the cache as bytes and the layer carries per-tensor float scales
    kv8, k_scale, v_scale = quantize_kv_fp8(kv_cache)
    layer8 = SimpleNamespace(layer_name="t.attn", topk_indices_buffer=buf, _k_scale=torch.tensor([k_scale]),
                             _v_scale=torch.tensor([v_scale]), _k_scale_float=k_scale, _v_scale_float=v_scale)
    out8 = torch.zeros_like(out)
    attend8.forward(layer8, q, kv8.view(torch.uint8), out8)
    kv_deq = dequantize_kv_fp8(kv8, k_scale, v_scale)
    # vLLM's memory-profiling run (no metadata): an impl with a workspace sizes it there, so vLLM counts it
    impls.get_forward_context = lambda: SimpleNamespace(attn_metadata=None)
    reserving.forward(layer8, q, kv8.view(torch.uint8), torch.zeros_like(out))
    reserved = msa_calls.prefill_workspace(q.device).nbytes

    option_refusals = refused_options(model_dir)

    # Expected: each request alone, its pages laid out in order (identity block table).
    result = {"split": [md.num_decodes, md.num_prefills, imd.num_decodes, imd.num_prefills],
              "selection_mismatches": 0, "max_abs_err": 0.0, "max_abs_err_fp8": 0.0, "pruned_tokens": 0,
              "untouched_rows_ok": True, "total_kv_blocks": impls.batch_of(md).prefill.total_kv_blocks,
              "prefill_pages": sum((s + BLOCK - 1) // BLOCK for s in seq_lens[md.num_decodes:]),
              # partials (bf16 values + fp32 LSEs) for the profiling batch's n tokens + one max-length request's
              # pages widened to bf16 (max_model_len 2048)
              "reserved_bytes": reserved,
              "expected_reserve_bytes": KV_HEADS * n * TOP_K * (HEADS // KV_HEADS) * (HEAD_DIM * 2 + 4)
              + (2048 // BLOCK) * KV_HEADS * BLOCK * 2 * HEAD_DIM * 2}
    start = 0
    for r, (s, ql) in enumerate(zip(seq_lens, q_lens, strict=True)):
        nb = (s + BLOCK - 1) // BLOCK
        rows = slice(start, start + ql)
        pages_r = table[r, :nb].long()
        ident = torch.arange(nb, dtype=torch.int32)[None]
        qsl = torch.tensor([0, ql], dtype=torch.int32)
        sl = torch.tensor([s], dtype=torch.int32)
        sel = reference.msa_index_topk(iq[rows].view(ql, KV_HEADS, HEAD_DIM), index_cache[pages_r], ident, qsl, sl,
                                       top_k=TOP_K, local_blocks=1)
        got = buf[rows].permute(1, 0, 2)
        for h in range(KV_HEADS):
            for t in range(ql):
                if sorted(sel[h, t].tolist()) != sorted(got[h, t].tolist()):
                    result["selection_mismatches"] += 1
        result["pruned_tokens"] += int((sel[0] >= 0).sum(-1).eq(TOP_K).logical_and(
            torch.arange(s - ql, s) >= TOP_K * BLOCK).sum())
        exp = reference.sparse_attention(q[rows].view(ql, HEADS, HEAD_DIM), kv_cache[pages_r], sel, ident, qsl, sl,
                                         HEAD_DIM ** -0.5)
        err = (out[rows].view(ql, HEADS, HEAD_DIM).float() - exp).abs().max().item()
        result["max_abs_err"] = max(result["max_abs_err"], err)
        exp8 = reference.sparse_attention(q[rows].view(ql, HEADS, HEAD_DIM), kv_deq[pages_r], sel, ident, qsl, sl,
                                          HEAD_DIM ** -0.5)
        err8 = (out8[rows].view(ql, HEADS, HEAD_DIM).float() - exp8).abs().max().item()
        result["max_abs_err_fp8"] = max(result["max_abs_err_fp8"], err8)
        start += ql
    result["untouched_rows_ok"] = bool((buf[n:] == -7).all())
    result["option_refusals"] = option_refusals
    result["num_tokens"] = n
    return result


if __name__ == "__main__":
    print("M3LAB_JSON " + json.dumps(main(sys.argv[1])))
