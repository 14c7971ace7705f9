// Host-side contract of the sm_90a tile-outer kernel (tile_outer_sm90.cu); plain C++ so the torch binding can
// include it without CUTLASS. Tensors are those of kernels/msa/tile_outer.py's TileSplit and the partial buffers.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

struct TileOuterParams {
  void const* q;                 // bf16 [T, H, 128], unit last stride
  void* out;                     // bf16 [T, H, 128]
  void* partial_o;               // bf16 (or int8, see partial_scale) [Hkv, T, top_k, group, 128] contiguous
  float* partial_lse;            // fp32 [Hkv, T, top_k, group] contiguous
  int32_t const* union_blocks;   // [Hkv, tiles, max_union] logical block ids
  int32_t const* pages;          // [Hkv, tiles, max_union] cache pages of those blocks
  int32_t const* count;          // [Hkv, tiles] union size
  int32_t const* clean;          // [Hkv, tiles] leading unmasked union entries
  int64_t const* tokmask;        // [Hkv, tiles * 128 / group] bit j: the token chose union entry j
  int32_t const* carrier;        // [Hkv, T]
  int8_t const* direct;          // [Hkv, T]
  int32_t const* work;           // [Hkv * tiles] tiles with tile-outer work
  int32_t const* num_work;       // [1]
  int32_t const* positions;      // [T]
  int64_t stride_qt, stride_qh, stride_ot, stride_oh;
  int32_t num_tokens, num_tiles, num_kv_heads, num_pages, max_union, top_k, use_clean;
  float scale_log2;              // softmax scale * log2(e)
  int32_t const* rest;           // [Hkv, T, top_k] slots left to KV-outer (-1: none), read with fuse_merge
  int32_t fuse_merge;            // 1: fold the rows' KV-outer parts in and write every row of the tile to out
  // v12m: int8 partials (merge.store_part's format: int8 [Hkv, T, top_k, group, 128] + one fp32 scale per row of 128)
  float const* partial_scale;    // [Hkv, T, top_k, group] fp32 row scales when partial_o is int8, else null
  void* carrier_o;               // bf16 [Hkv, T, group, 128]: carrier parts go here instead of partial_o (null: there)
  float* carrier_lse;            // fp32 [Hkv, T, group]: their log2-sum-exp
  // v18: the FP8 step (variants 6-16) reads e4m3 K and V^T pages (kernels/msa/widen.py's transposed pages); V's
  // per-tensor scale is applied to O on chip (K's is in scale_log2). Ignored by the bf16 variants.
  float v_scale;
  // v18r: query heads per KV head, 16 (M3 at TP <= 4) or 8 (TP 8: 16-token tiles, variants 5 and 12 only)
  int32_t group;
  // v19: tile i is the tokens [tile_first[i], tile_first[i + 1]) of one request (tile_outer.request_tiles)
  int32_t const* tile_first;     // [tiles + 1]
};

int tile_outer_sm90_smem_bytes(int variant);

// variant: 0 = 2 stages, no overlap; 1 = 2 stages + intra-warpgroup overlap; 2 = 3 stages + overlap;
// 3 = 2 + FFMA/ex2.approx softmax; 4 = 3 + ping-pong between the two consumer warpgroups; 5 = 3 + next tile's Q
// prefetched by cp.async (for a persistent grid); 6 = FP8 wgmma (Q quantised per row on chip, e4m3 K and V^T pages),
// 4 stages, overlap, FFMA softmax; 8 = 6 + the next tile's bf16 Q staged by cp.async (quantised at the tile's start;
// persistent grid); 10 = 8 + the fused merge's first KV-outer part loaded during the item's last block; 12 = 10 with
// the next Q staged two threads per row; 16 = 12 without 10's first-part load (GROUP 8). (7, 9, 11, 14: measured
// and removed, NOTES v18, v18p.) GROUP 16 takes every variant but 16; GROUP 8 (v18r) only 5 and 16.
// kv: bf16 cache [pages, Hkv, 128, 256] (strides in elements), or for variants 6-16 the e4m3 transposed pages
// (same shape: K rows, then V^T rows of 128 keys in widen.py's order); grid: CTAs (each walks the work list).
cudaError_t tile_outer_sm90_launch(TileOuterParams const& prm, void const* kv, int64_t stride_kvp, int64_t stride_kvh,
                                   int64_t stride_kvt, int grid, int variant, cudaStream_t stream);
