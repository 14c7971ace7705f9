"""MiniMax Sparse Attention (MSA): fp32 PyTorch reference and Triton kernels for Hopper, in vLLM's layouts.

The reference functions are re-exported here (importing them needs torch only). The Triton entry points live in
``kernels.msa.indexer`` (``msa_index_topk_triton``), ``kernels.msa.prefill`` (``sparse_attention_triton``) and
``kernels.msa.decode`` (``sparse_decode_triton``); they are imported on use so that CPU-only callers never load
Triton. See README.md in this folder for the layouts.
"""
from kernels.msa.reference import (
    BLOCK_SIZE,
    TOP_K,
    MSAShapeError,
    decode_query_start_loc,
    index_block_scores,
    msa_index_topk,
    select_blocks,
    sparse_attention,
    sparse_decode,
    token_positions,
)

__all__ = [
    "BLOCK_SIZE",
    "TOP_K",
    "MSAShapeError",
    "decode_query_start_loc",
    "index_block_scores",
    "msa_index_topk",
    "select_blocks",
    "sparse_attention",
    "sparse_decode",
    "token_positions",
]
