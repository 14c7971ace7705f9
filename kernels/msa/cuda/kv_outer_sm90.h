// Host-side contract of the sm_90a KV-outer kernel (kv_outer_sm90.cu): the same inputs and outputs as
// `kv_outer_partials` in kernels/msa/prefill.py (bf16 only). Plain C++ so ctypes can mirror it without CUTLASS.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

struct KvOuterParams {
  void const* q;                 // bf16 [T, Hkv * group, 128], unit last stride
  void* partial_o;               // bf16 [Hkv, T, top_k, group, 128] contiguous (one entry = group x 128)
  float* partial_lse;            // fp32 [Hkv, T, top_k, group] contiguous (log2-sum-exp; -inf: no visible key)
  int32_t const* perm;           // CSR entries (flat index into [Hkv, T, top_k]) grouped by segment
  int64_t const* row_ptr;        // [num_segs + 1]
  int32_t const* work_seg;       // [num_work] segment of each work item (num_segs: padding, ends the list)
  int32_t const* work_chunk;     // [num_work] chunk of CHUNK entries of that segment
  int32_t const* block_table;    // [requests, max_blocks] cache pages
  int32_t const* seq_lens;       // [requests]
  int32_t const* positions;      // [T] absolute position of each query token
  int64_t stride_qt, stride_qh, stride_btr;
  int32_t num_tokens, num_segs, num_work, blocks_per_head, max_blocks, num_kv_heads, num_pages, top_k, chunk;
  float scale_log2;              // softmax scale * log2(e)
  float* partial_scale;          // v12n: null: bf16 parts; else int8 parts (partial_o int8, same shape) and their
                                 // fp32 per-row scales [Hkv, T, top_k, group] (merge.store_part's format)
  int32_t group;                 // v18r: query heads per KV head, 16, or 8 (M3 at TP 8: variant 7 only)
};

int kv_outer_sm90_smem_bytes(int variant);

// kv: bf16 cache [pages, Hkv, 128, 256] (K in columns 0..127, V in 128..255; strides in elements);
// grid: CTAs (each walks the work list with stride grid); variant (v12n; every variant has a metadata warp loading
// the entries, tokens and positions of the next tiles ahead of the Q warp; v12k's 0 and 1 without it were removed):
// 2 = 1 K/V stage + 8 Q stages, 3 = 2 K/V stages + 4 Q stages; bf16 or int8 parts (partial_scale set) with either.
cudaError_t kv_outer_sm90_launch(KvOuterParams const& prm, void const* kv, int64_t stride_kvp, int64_t stride_kvh,
                                 int64_t stride_kvt, int grid, int variant, cudaStream_t stream);
