// MSA prefill, KV-outer ("gather Q") stage, as a warp-specialised Hopper kernel (CUTLASS/CuTe, sm_90a).
//
// Same contract as `_kv_outer_kernel` in kernels/msa/prefill.py (bf16 only): a work item = a chunk of the entries
// of one segment (KV head, request, 128-key block) of the selection's CSR; the block's K and V are loaded once and
// every entry (token, slot) of the chunk streams through them: 16 query heads x 128 = 4 KiB of Q gathered, softmax
// over the block's 128 keys (single block: no online rescale), a normalised 16 x 128 partial output + its 16
// log2-sum-exps written to the entry's slot.
//
// Structure: 3 warpgroups per CTA, a persistent grid walking the work list with stride gridDim.x.
//   warpgroup 0 = producers (v12n): a metadata warp walks the work items and writes each group of 32 entries (8
//            tiles of 4 entries = 4 tokens x 16 heads = 64 MMA rows) with their tokens and positions into a 4-group
//            ring in shared memory, so the chain work_seg -> row_ptr -> perm -> positions runs ahead of the Q warp;
//            the Q warp issues 2 TMA boxes [16 rows, 64 cols] per entry (q viewed as (head, d, kv head, token)) into
//            a QSTAGES-deep ring, the entries' ids and positions beside the tile; the K/V warp one TMA of the page's
//            K [128 keys, 128] and V^T per work item into a KVSTAGES-deep ring.
//   warpgroups 1, 2 = consumers, taking tiles alternately (one's softmax runs under the other's MMAs): S = Q K^T
//            (wgmma, both from shared memory), mask (only where a key may be past the token), softmax with FFMA +
//            ex2.approx, O = P V (wgmma, P from registers), normalise; each warp holds one entry (16 rows; v18r,
//            8 query heads per KV head: two entries of 8), stages its 4 KiB of O in shared memory and writes it with
//            two TMA stores per entry (not 4-byte scattered stores); int8 parts (v12n, merge.store_part's format):
//            the entry's bytes by 16-byte stores + one fp32 scale per row.
// Why each choice: kernels/msa/NOTES.md v12k.

#include <cstdint>
#include <cuda_runtime.h>

#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>
#include <cutlass/cutlass.h>
#include <cutlass/numeric_types.h>

#include "kv_outer_sm90.h"
#include "msa_sm90_common.cuh"

namespace msa_kv_sm90 {

using namespace cute;
using namespace msa_sm90_common;

// An entry = one (token, slot) of a KV head: G query heads x 128. A tile = one consumer warpgroup's 64 MMA rows =
// kTileE entries; G = 16 (M3 at TP <= 4): 4 entries, one per warp; G = 8 (TP 8, v18r): 8 entries, a warp's two row
// halves (a thread's rows g and g + 8) two entries, so an entry's values are per row half and stay warp-uniform.
template <int G>
struct Ent {
  static_assert(G == 16 || G == 8, "16 or 8 query heads per KV head");
  static constexpr int kTileE = kRowsWG / G;  // entries per tile
  static constexpr int kPerWarp = 16 / G;     // entries per warp
  static CUTLASS_DEVICE constexpr int of(int rr) { return kPerWarp == 2 ? rr : 0; }  // row half rr's entry
};
constexpr int kMaxTileE = 8;
constexpr int kMetaSlots = 4;     // v12n: groups of 32 entries (8 or 4 tiles) the metadata warp runs ahead of the Q warp

// A tile of 64 rows x 128 (Q, and O staged for the store): K-major, 128-byte swizzle. Its rows Gj..Gj+G-1 of
// columns 64kb..64kb+63 are one contiguous, 1024-byte aligned box (G x 128 bytes; the swizzle atom is 8 rows):
// box (kb * kTileE + j) of SmemLayoutBoxes<G, N>.
template <int N>
using SmemLayoutRows = decltype(tile_to_shape(GMMA::Layout_K_SW128_Atom<Element>{},
                                              Shape<Int<kRowsWG>, Int<kHeadDim>, Int<N>>{}));
template <int G>
using SmemLayoutBox = decltype(tile_to_shape(GMMA::Layout_K_SW128_Atom<Element>{}, Shape<Int<G>, _64>{}));
template <int G, int N>
using SmemLayoutBoxes = decltype(tile_to_shape(GMMA::Layout_K_SW128_Atom<Element>{}, Shape<Int<G>, _64, Int<N>>{}));

template <int kKvStages, int kQStages>  // (2, 4) and (1, 8): 224 KiB of the 227 KiB a CTA may have
struct SharedStorage {
  alignas(1024) cute::array_aligned<Element, cosize_v<SmemLayoutK<kKvStages>>> k;
  alignas(1024) cute::array_aligned<Element, cosize_v<SmemLayoutVt<kKvStages>>> vt;
  alignas(1024) cute::array_aligned<Element, cosize_v<SmemLayoutRows<kQStages>>> q;
  alignas(1024) cute::array_aligned<Element, cosize_v<SmemLayoutRows<2>>> o;  // one O tile per consumer
  uint64_t kv_full[kKvStages];
  uint64_t kv_empty[kKvStages];
  uint64_t q_full[kQStages];
  uint64_t q_empty[kQStages];
  int32_t kv_meta[kKvStages][4];      // tiles of the item (-1: the list ended), first key position, seq_len
  int32_t q_ent[kQStages][kMaxTileE];  // entry of each tile row group (-1: none)
  int32_t q_pos[kQStages][kMaxTileE];  // its token's position
  // v12n metadata ring (variants with the metadata warp): a group = up to 32 entries of one work item, in order
  uint64_t meta_full[kMetaSlots];
  uint64_t meta_empty[kMetaSlots];
  int32_t meta_hdr[kMetaSlots][2];    // tiles in the group (-1: the list ended), KV head
  int32_t meta_ent[kMetaSlots][32];   // entry (-1: none), its token, the token's position
  int32_t meta_tok[kMetaSlots][32];
  int32_t meta_pos[kMetaSlots][32];
};

// GMEM views for TMA (K and V^T of a page: msa_sm90_common.cuh):
// Q = (head in group, d in half, half, kv head, token); partial O = (head in group, d in half, half, entry).
template <int G>
using GShapeQ = Shape<Int<G>, _64, int32_t, int32_t, int32_t>;
using GStrideQ = Stride<int64_t, _1, int64_t, int64_t, int64_t>;
template <int G>
using GShapeO = Shape<Int<G>, _64, int32_t, int32_t>;
using GStrideO = Stride<int64_t, _1, int64_t, int64_t>;
template <int G>
using TmaQ = decltype(make_tma_copy(SM90_TMA_LOAD{},
    make_tensor(make_gmem_ptr(static_cast<Element const*>(nullptr)), GShapeQ<G>{}, GStrideQ{}), SmemLayoutBox<G>{}));
template <int G>
using TmaO = decltype(make_tma_copy(SM90_TMA_STORE{},
    make_tensor(make_gmem_ptr(static_cast<Element*>(nullptr)), GShapeO<G>{}, GStrideO{}), SmemLayoutBox<G>{}));

constexpr uint32_t kKvBytes = kPageBytes;

// Softmax of one block's scores in place (s becomes 2^(s * scale - max)); lse = this thread's rows' log2-sum-exp
// (-inf where no key is visible), inv = 1 / sum (0 there). MASKED: keys j > lim[r] are invisible in row half r
// (warp-uniform per half: its entry's token).
template <bool MASKED, class TS, class TC>
CUTLASS_DEVICE void softmax_block(TS& s, TC const& coord, float scale_log2, int const (&lim)[2], float (&lse)[2],
                                  float (&inv)[2]) {
  Tensor s_rc = make_tensor(s.data(), rowcol(s.layout()));
  Tensor c_rc = make_tensor(coord.data(), rowcol(coord.layout()));
  CUTLASS_PRAGMA_UNROLL
  for (int r = 0; r < size<0>(s_rc); ++r) {
    float mx = -INFINITY;
    CUTLASS_PRAGMA_UNROLL
    for (int c = 0; c < size<1>(s_rc); ++c) {
      if constexpr (MASKED) {
        if (get<1>(c_rc(r, c)) > lim[r]) s_rc(r, c) = -INFINITY;
      }
      mx = fmaxf(mx, s_rc(r, c));
    }
    mx = quad_max(mx) * scale_log2;  // scale > 0; -inf stays -inf
    float const m_safe = mx == -INFINITY ? 0.f : mx;
    float sum = 0.f;
    CUTLASS_PRAGMA_UNROLL
    for (int c = 0; c < size<1>(s_rc); ++c) {
      float const e = ex2_approx(fmaf(s_rc(r, c), scale_log2, -m_safe));
      s_rc(r, c) = e;
      sum += e;
    }
    sum = quad_sum(sum);
    lse[r] = sum > 0.f ? mx + __log2f(sum) : -INFINITY;
    inv[r] = sum > 0.f ? 1.f / sum : 0.f;
  }
}

// v13q: softmax_block's result with the latency taken out (ncu, NOTES v13q: the softmax was 39 % of a consumer's
// time, its SASS one row at a time with serial 32-long FMNMX and FADD chains, then an IEEE log2 and division with
// their denormal branches): both rows at once, 4 partial maxima / sums per row (chains of 8), lg2.approx and
// rcp.approx (the LSE and 1 / sum to ~1 ulp, far under the bf16 parts' rounding).
template <bool MASKED, class TS, class TC>
CUTLASS_DEVICE void softmax_rows(TS& s, TC const& coord, float scale_log2, int const (&lim)[2], float (&lse)[2],
                                 float (&inv)[2]) {
  Tensor s_rc = make_tensor(s.data(), rowcol(s.layout()));
  Tensor c_rc = make_tensor(coord.data(), rowcol(coord.layout()));
  constexpr int R = decltype(size<0>(s_rc))::value;
  constexpr int C = decltype(size<1>(s_rc))::value;
  static_assert(R == 2 && C % 4 == 0, "two rows per thread, columns in groups of 4");
  float mx[R][4];
  CUTLASS_PRAGMA_UNROLL
  for (int r = 0; r < R; ++r) {
    CUTLASS_PRAGMA_UNROLL
    for (int k = 0; k < 4; ++k) mx[r][k] = -INFINITY;
  }
  CUTLASS_PRAGMA_UNROLL
  for (int c = 0; c < C; ++c) {
    CUTLASS_PRAGMA_UNROLL
    for (int r = 0; r < R; ++r) {
      if constexpr (MASKED) {
        if (get<1>(c_rc(r, c)) > lim[r]) s_rc(r, c) = -INFINITY;
      }
      mx[r][c % 4] = fmaxf(mx[r][c % 4], s_rc(r, c));
    }
  }
  float m_safe[R];
  float row_max[R];
  CUTLASS_PRAGMA_UNROLL
  for (int r = 0; r < R; ++r) {
    row_max[r] = quad_max(fmaxf(fmaxf(mx[r][0], mx[r][1]), fmaxf(mx[r][2], mx[r][3]))) * scale_log2;
    m_safe[r] = row_max[r] == -INFINITY ? 0.f : row_max[r];
  }
  float sum[R][4];
  CUTLASS_PRAGMA_UNROLL
  for (int r = 0; r < R; ++r) {
    CUTLASS_PRAGMA_UNROLL
    for (int k = 0; k < 4; ++k) sum[r][k] = 0.f;
  }
  CUTLASS_PRAGMA_UNROLL
  for (int c = 0; c < C; ++c) {
    CUTLASS_PRAGMA_UNROLL
    for (int r = 0; r < R; ++r) {
      float const e = ex2_approx(fmaf(s_rc(r, c), scale_log2, -m_safe[r]));
      s_rc(r, c) = e;
      sum[r][c % 4] += e;
    }
  }
  CUTLASS_PRAGMA_UNROLL
  for (int r = 0; r < R; ++r) {
    float const total = quad_sum((sum[r][0] + sum[r][1]) + (sum[r][2] + sum[r][3]));
    float lg, rc;
    asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(lg) : "f"(total));
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(rc) : "f"(total));
    lse[r] = total > 0.f ? row_max[r] + lg : -INFINITY;
    inv[r] = total > 0.f ? rc : 0.f;
  }
}

// Element offset of (row, d) in tile `tile` of SmemLayoutRows = o_row + o_column (checked against CuTe's layout on the host, NOTES v12k):
// the 128-byte swizzle XORs the 16-byte chunk index with row % 8. Written out because CuTe's per-element address
// is hoisted out of the tile loop as one register per element (64 more live registers: spills).
CUTLASS_DEVICE int o_column(int row, int d) {
  return (d / 64) * 4096 + ((((d / 8) % 8) ^ (row % 8)) * 8) + d % 8;
}

CUTLASS_DEVICE int o_row(int tile, int row) { return tile * kRowsWG * kHeadDim + (row / 8) * 512 + (row % 8) * 64; }

// Segment id -> (KV head, request, block): seg = ((window * Hkv + h) * requests + req) * max_blocks + blk.
struct Item {
  int64_t start, end;
  int h, req, blk;
};

CUTLASS_DEVICE bool load_item(KvOuterParams const& prm, int w, Item& it) {
  int const seg = prm.work_seg[w];
  if (seg >= prm.num_segs) return false;  // padding: the rest of the list is padding too
  it.start = prm.row_ptr[seg] + static_cast<int64_t>(prm.work_chunk[w]) * prm.chunk;
  it.end = min(it.start + prm.chunk, prm.row_ptr[seg + 1]);
  it.h = (seg / prm.blocks_per_head) % prm.num_kv_heads;
  it.req = (seg % prm.blocks_per_head) / prm.max_blocks;
  it.blk = seg % prm.max_blocks;
  return true;
}

// kDiag (v13q, timing diagnostics only, bf16; the parts they write are wrong): 0 = the kernel; 1 = the consumers
// skip the math (S, softmax, P V: memory-only time); 2 = the Q warp issues no Q gathers (the consumers compute on
// stale tiles: math + K/V + stores); 3 = the consumers store nothing (Q gathers + K/V + math).
// kFast (v13q): softmax_rows instead of softmax_block, and the int8 epilogue's row maxima the same way.
template <int kKvStages, int kQStages, bool kInt8, int kDiag = 0, bool kFast = false, int G = kGroup>
__global__ void __launch_bounds__(kThreads, 1)
kv_outer_kernel(CUTE_GRID_CONSTANT TmaK const tma_k, CUTE_GRID_CONSTANT TmaVt const tma_vt,
                CUTE_GRID_CONSTANT TmaQ<G> const tma_q, CUTE_GRID_CONSTANT TmaO<G> const tma_o,
                CUTE_GRID_CONSTANT KvOuterParams const prm, int32_t const num_entries) {
  using E = Ent<G>;
  constexpr int kTileE = E::kTileE;
  constexpr int NE = E::kPerWarp;
  constexpr uint32_t kEntryBytes = G * kHeadDim * sizeof(Element);
  extern __shared__ char smem_raw[];
  auto& sh = *reinterpret_cast<SharedStorage<kKvStages, kQStages>*>(smem_raw);
  int const wg = threadIdx.x / 128;
  int const tid = threadIdx.x % 128;
  int const lane = threadIdx.x % 32;

  if (threadIdx.x == 0) {
    CUTLASS_PRAGMA_UNROLL
    for (int s = 0; s < kKvStages; ++s) {
      cutlass::arch::ClusterTransactionBarrier::init(&sh.kv_full[s], 1);
      cutlass::arch::ClusterBarrier::init(&sh.kv_empty[s], 2 * 128);
    }
    CUTLASS_PRAGMA_UNROLL
    for (int s = 0; s < kQStages; ++s) {
      cutlass::arch::ClusterTransactionBarrier::init(&sh.q_full[s], 1);
      cutlass::arch::ClusterBarrier::init(&sh.q_empty[s], 128);
    }
    CUTLASS_PRAGMA_UNROLL
    for (int s = 0; s < kMetaSlots; ++s) {
      cutlass::arch::ClusterBarrier::init(&sh.meta_full[s], 32);
      cutlass::arch::ClusterBarrier::init(&sh.meta_empty[s], 32);  // every Q-warp lane reads the group's header
    }
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();

  Tensor sK = make_tensor(make_smem_ptr(sh.k.data()), SmemLayoutK<kKvStages>{});
  Tensor sVt = make_tensor(make_smem_ptr(sh.vt.data()), SmemLayoutVt<kKvStages>{});

  if (wg == 0) {  // producers: warp 0 streams the Q tiles, warp 1 the K/V pages (independent rings), warp 2 the
                  // entries / tokens / positions of the next groups of tiles into the metadata ring (v12n)
    cutlass::arch::warpgroup_reg_dealloc<40>();
    int const pw = threadIdx.x / 32;
    if (pw > 2) return;
    bool const leader = lane == 0;
    if (pw == 2) {  // the chain work_seg -> row_ptr -> perm -> positions, off the Q warp's path (v12n)
      int g_it = 0;
      Item it;
      for (int w = blockIdx.x; w < prm.num_work && load_item(prm, w, it); w += gridDim.x) {
        for (int64_t b = it.start; b < it.end; b += 32, ++g_it) {
          int64_t const idx = b + lane;
          int32_t const e = idx < it.end ? prm.perm[idx] : -1;
          int32_t const t = e >= 0 ? (e / prm.top_k) % prm.num_tokens : 0;
          int32_t const p = e >= 0 ? prm.positions[t] : 0;
          int const slot = g_it % kMetaSlots;
          cutlass::arch::ClusterBarrier::wait(&sh.meta_empty[slot], ((g_it / kMetaSlots) & 1) ^ 1);
          sh.meta_ent[slot][lane] = e;
          sh.meta_tok[slot][lane] = t;
          sh.meta_pos[slot][lane] = p;
          if (leader) {
            sh.meta_hdr[slot][0] = static_cast<int>((min(it.end - b, int64_t(32)) + kTileE - 1) / kTileE);
            sh.meta_hdr[slot][1] = it.h;
          }
          cutlass::arch::ClusterBarrier::arrive(&sh.meta_full[slot]);
        }
      }
      int const slot = g_it % kMetaSlots;
      cutlass::arch::ClusterBarrier::wait(&sh.meta_empty[slot], ((g_it / kMetaSlots) & 1) ^ 1);
      if (leader) sh.meta_hdr[slot][0] = -1;
      cutlass::arch::ClusterBarrier::arrive(&sh.meta_full[slot]);
      return;
    }
    if (pw == 1) {
      Tensor mK = tma_k.get_tma_tensor(GShape{Int<kKeys>{}, Int<kHeadDim>{}, prm.num_kv_heads, prm.num_pages});
      Tensor mVt = tma_vt.get_tma_tensor(GShape{Int<kHeadDim>{}, Int<kKeys>{}, prm.num_kv_heads, prm.num_pages});
      int kv_it = 0;
      Item it;
      for (int w = blockIdx.x; w < prm.num_work && load_item(prm, w, it); w += gridDim.x, ++kv_it) {
        int const page = prm.block_table[it.req * prm.stride_btr + it.blk];
        int const seq_len = prm.seq_lens[it.req];
        int const kvs = kv_it % kKvStages;
        cutlass::arch::ClusterBarrier::wait(&sh.kv_empty[kvs], ((kv_it / kKvStages) & 1) ^ 1);
        if (leader) {
          sh.kv_meta[kvs][0] = static_cast<int>((it.end - it.start + kTileE - 1) / kTileE);
          sh.kv_meta[kvs][1] = it.blk * kKeys;
          sh.kv_meta[kvs][2] = seq_len;
          auto [tKg, tKs] = tma_partition(tma_k, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sK),
                                          group_modes<0, 2>(mK(_, _, it.h, _)));
          auto [tVg, tVs] = tma_partition(tma_vt, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sVt),
                                          group_modes<0, 2>(mVt(_, _, it.h, _)));
          cutlass::arch::ClusterTransactionBarrier::arrive_and_expect_tx(&sh.kv_full[kvs], kKvBytes);
          copy(tma_k.with(sh.kv_full[kvs]), tKg(_, page), tKs(_, kvs));
          copy(tma_vt.with(sh.kv_full[kvs]), tVg(_, page), tVs(_, kvs));
        }
        __syncwarp();
      }
      // end of the list: an item with -1 tiles tells the consumers to stop
      int const kvs = kv_it % kKvStages;
      cutlass::arch::ClusterBarrier::wait(&sh.kv_empty[kvs], ((kv_it / kKvStages) & 1) ^ 1);
      if (leader) {
        sh.kv_meta[kvs][0] = -1;
        cutlass::arch::ClusterBarrier::arrive(&sh.kv_full[kvs]);
      }
      return;
    }
    Tensor mQ = tma_q.get_tma_tensor(GShapeQ<G>{Int<G>{}, _64{}, 2, prm.num_kv_heads, prm.num_tokens});
    Tensor sQb = make_tensor(make_smem_ptr(sh.q.data()), SmemLayoutBoxes<G, 2 * kTileE * kQStages>{});
    int q_it = 0;
    // the Q warp only issues: each group's entries are in the metadata ring already (v12n)
    for (int g_it = 0;; ++g_it) {
      int const slot = g_it % kMetaSlots;
      cutlass::arch::ClusterBarrier::wait(&sh.meta_full[slot], (g_it / kMetaSlots) & 1);
      int const ntiles = sh.meta_hdr[slot][0];
      if (ntiles < 0) break;
      int const h = sh.meta_hdr[slot][1];
      auto [tQg0, tQs0] = tma_partition(tma_q, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sQb),
                                        group_modes<0, 2>(mQ(_, _, 0, h, _)));
      auto [tQg1, tQs1] = tma_partition(tma_q, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sQb),
                                        group_modes<0, 2>(mQ(_, _, 1, h, _)));
#pragma unroll 1
      for (int i = 0; i < ntiles; ++i, ++q_it) {
        int const qs = q_it % kQStages;
        cutlass::arch::ClusterBarrier::wait(&sh.q_empty[qs], ((q_it / kQStages) & 1) ^ 1);
        if (leader) {
          uint32_t bytes = 0;
          CUTLASS_PRAGMA_UNROLL
          for (int j = 0; j < kTileE; ++j) {
            int32_t const e = sh.meta_ent[slot][kTileE * i + j];
            sh.q_ent[qs][j] = e;
            sh.q_pos[qs][j] = sh.meta_pos[slot][kTileE * i + j];
            bytes += e >= 0 && kDiag != 2 ? kEntryBytes : 0;
          }
          cutlass::arch::ClusterTransactionBarrier::arrive_and_expect_tx(&sh.q_full[qs], bytes);
          CUTLASS_PRAGMA_UNROLL
          for (int j = 0; j < kTileE; ++j) {
            if (kDiag == 2 || sh.meta_ent[slot][kTileE * i + j] < 0) continue;
            int const t = sh.meta_tok[slot][kTileE * i + j];
            copy(tma_q.with(sh.q_full[qs]), tQg0(_, t), tQs0(_, qs * 2 * kTileE + j));
            copy(tma_q.with(sh.q_full[qs]), tQg1(_, t), tQs1(_, qs * 2 * kTileE + kTileE + j));
          }
        }
        __syncwarp();
      }
      // Each lane releases the slot itself (v18y): all 32 read its header; with the leader's arrive alone, the
      // others' reads were ordered before the refill only through __syncwarp, and racecheck reported the hazard.
      cutlass::arch::ClusterBarrier::arrive(&sh.meta_empty[slot]);
    }
    return;
  }

  // consumers
  cutlass::arch::warpgroup_reg_alloc<232>();
  int const cw = wg - 1;
  int const warp = tid / 32;  // the tile's entries warp * NE + u (u < NE) are this warp's
  Tensor sQ = make_tensor(make_smem_ptr(sh.q.data()), SmemLayoutRows<kQStages>{});
  Tensor sOb = make_tensor(make_smem_ptr(sh.o.data()), SmemLayoutBoxes<G, 2 * 2 * kTileE>{});
  Tensor mO = tma_o.get_tma_tensor(GShapeO<G>{Int<G>{}, _64{}, 2, num_entries});
  auto [tOg0, tOs0] = tma_partition(tma_o, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sOb),
                                    group_modes<0, 2>(mO(_, _, 0, _)));
  auto [tOg1, tOs1] = tma_partition(tma_o, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sOb),
                                    group_modes<0, 2>(mO(_, _, 1, _)));
  MmaS mma_s;
  MmaO mma_o;
  auto thr_s = mma_s.get_thread_slice(tid);
  auto thr_o = mma_o.get_thread_slice(tid);
  Tensor tSrQ = thr_s.partition_fragment_A(sQ);
  Tensor tSrK = thr_s.partition_fragment_B(sK);
  Tensor tOrVt = thr_o.partition_fragment_B(sVt);
  Tensor cS = thr_s.partition_C(make_identity_tensor(Shape<Int<kRowsWG>, Int<kKeys>>{}));
  Tensor cO = thr_o.partition_C(make_identity_tensor(Shape<Int<kRowsWG>, Int<kHeadDim>>{}));
  Tensor cO_rc = make_tensor(cO.data(), rowcol(cO.layout()));
  Tensor cS_rc = make_tensor(cS.data(), rowcol(cS.layout()));
  int const row0 = get<0>(cS_rc(0, 0));  // this thread's rows: row0, row0 + 8 (G 16: heads g, g + 8 of one entry)

  int q_it = 0;
  for (int kv_it = 0;; ++kv_it) {
    int const kvs = kv_it % kKvStages;
    cutlass::arch::ClusterTransactionBarrier::wait(&sh.kv_full[kvs], (kv_it / kKvStages) & 1);
    int const ntiles = sh.kv_meta[kvs][0];
    if (ntiles < 0) break;
    int const kpos0 = sh.kv_meta[kvs][1];
    int const last_key = sh.kv_meta[kvs][2] - 1;  // keys past seq_len are invisible
    for (int i = 0; i < ntiles; ++i, ++q_it) {
      if ((q_it & 1) != cw) continue;
      int const qs = q_it % kQStages;
      cutlass::arch::ClusterTransactionBarrier::wait(&sh.q_full[qs], (q_it / kQStages) & 1);
      int ent[NE];
      int any_ent = -1;  // >= 0: the warp has an entry (warp-uniform)
      CUTLASS_PRAGMA_UNROLL
      for (int u = 0; u < NE; ++u) {
        ent[u] = sh.q_ent[qs][warp * NE + u];
        any_ent = max(any_ent, ent[u]);
      }
      int lim[2];  // per row half: keys j <= lim are visible
      CUTLASS_PRAGMA_UNROLL
      for (int r = 0; r < 2; ++r) lim[r] = min(sh.q_pos[qs][warp * NE + E::of(r)], last_key) - kpos0;

      float lse[2];
      float inv[2];
      Tensor tOrO = partition_fragment_C(mma_o, Shape<Int<kRowsWG>, Int<kHeadDim>>{});
      if constexpr (kDiag == 1) {  // memory-only timing: no MMA, no softmax
        cutlass::arch::ClusterBarrier::arrive(&sh.q_empty[qs]);
        clear(tOrO);
        lse[0] = lse[1] = inv[0] = inv[1] = 0.f;
      } else {
        Tensor tSrS = partition_fragment_C(mma_s, Shape<Int<kRowsWG>, Int<kKeys>>{});
        warpgroup_fence_operand(tSrS);
        warpgroup_arrive();
        mma_s.accumulate_ = GMMA::ScaleOut::Zero;
        CUTLASS_PRAGMA_UNROLL
        for (int kb = 0; kb < size<2>(tSrQ); ++kb) {
          cute::gemm(mma_s, tSrQ(_, _, kb, qs), tSrK(_, _, kb, kvs), tSrS);
          mma_s.accumulate_ = GMMA::ScaleOut::One;
        }
        warpgroup_commit_batch();
        warpgroup_wait<0>();
        warpgroup_fence_operand(tSrS);
        cutlass::arch::ClusterBarrier::arrive(&sh.q_empty[qs]);  // Q read: the producer may refill the stage

        if (__any_sync(0xffffffffu, min(lim[0], lim[1]) < kKeys - 1)) {  // warp-uniform: a key may be invisible
          if constexpr (kFast) softmax_rows<true>(tSrS, cS, prm.scale_log2, lim, lse, inv);
          else softmax_block<true>(tSrS, cS, prm.scale_log2, lim, lse, inv);
        } else {
          if constexpr (kFast) softmax_rows<false>(tSrS, cS, prm.scale_log2, lim, lse, inv);
          else softmax_block<false>(tSrS, cS, prm.scale_log2, lim, lse, inv);
        }
        Tensor rP = make_tensor_like<Element>(tSrS);
        CUTLASS_PRAGMA_UNROLL
        for (int x = 0; x < size(tSrS); ++x) rP(x) = static_cast<Element>(tSrS(x));
        Tensor tOrP = make_tensor(rP.data(), acc_as_a(rP.layout()));
        warpgroup_fence_operand(tOrP);
        warpgroup_fence_operand(tOrO);
        warpgroup_arrive();
        mma_o.accumulate_ = GMMA::ScaleOut::Zero;
        CUTLASS_PRAGMA_UNROLL
        for (int kb = 0; kb < size<2>(tOrP); ++kb) {
          cute::gemm(mma_o, tOrP(_, _, kb), tOrVt(_, _, kb, kvs), tOrO);
          mma_o.accumulate_ = GMMA::ScaleOut::One;
        }
        warpgroup_commit_batch();
        warpgroup_wait<0>();
        warpgroup_fence_operand(tOrO);
      }

      // Epilogue, int8 parts (v12n, merge.store_part's format: per row (entry, head) the int8 round(o * 127 /
      // max|o|) and the fp32 scale max|o| / 127): the row's quad max, v10t's rounding add, the bytes staged per warp
      // in shared memory (16-byte chunks XOR-swizzled with row % 8: no bank conflicts) and written as the entry's
      // contiguous 2 KiB by 16-byte stores; the LSEs and scales by the quad leaders.
      if constexpr (kInt8) {
        if (any_ent >= 0) {
          __syncwarp();  // every lane has read this warp's previous staged entries
          Tensor o_rc = make_tensor(tOrO.data(), rowcol(tOrO.layout()));
          uint8_t* stage = reinterpret_cast<uint8_t*>(sh.o.data()) + (cw * 4 + warp) * (16 * kHeadDim);  // 16 rows
          float amax[2];
          float rmax[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};  // kFast: 4 chains per row, rows together
          if constexpr (kFast) {
            CUTLASS_PRAGMA_UNROLL
            for (int c = 0; c < size<1>(o_rc); ++c) {
              CUTLASS_PRAGMA_UNROLL
              for (int r = 0; r < 2; ++r) rmax[r][c % 4] = fmaxf(rmax[r][c % 4], fabsf(o_rc(r, c)));
            }
          }
          CUTLASS_PRAGMA_UNROLL
          for (int r = 0; r < 2; ++r) {
            float mx = 0.f;
            if constexpr (kFast) {
              mx = fmaxf(fmaxf(rmax[r][0], rmax[r][1]), fmaxf(rmax[r][2], rmax[r][3]));
            } else {
              CUTLASS_PRAGMA_UNROLL
              for (int c = 0; c < size<1>(o_rc); ++c) mx = fmaxf(mx, fabsf(o_rc(r, c)));
            }
            mx = quad_max(mx);
            amax[r] = mx * inv[r];  // max |o| of the normalised row
            float const mult = mx > 0.f ? 127.f / mx : 0.f;  // o * mult = normalised o * 127 / amax
            int const row = get<0>(cO_rc(r, 0)) % 16;  // in the warp's 16 rows (its entries' rows in order)
            CUTLASS_PRAGMA_UNROLL
            for (int c = 0; c < size<1>(o_rc); c += 2) {  // columns c, c + 1 are adjacent: one 2-byte store
              int const d = get<1>(cO_rc(r, c));
              // + 1.5 * 2^23 leaves round(y) in the low byte as two's complement (no float->int conversion)
              uint32_t const a = __float_as_uint(fmaf(o_rc(r, c), mult, 12582912.f));
              uint32_t const b = __float_as_uint(fmaf(o_rc(r, c + 1), mult, 12582912.f));
              *reinterpret_cast<uint16_t*>(stage + row * kHeadDim + (((d / 16) ^ (row % 8)) * 16) + d % 16) =
                  static_cast<uint16_t>(__byte_perm(a, b, 0x0040));
            }
          }
          __syncwarp();
          CUTLASS_PRAGMA_UNROLL
          for (int k = 0; k < 4; ++k) {  // 128 chunks of 16 bytes, in order: 512 contiguous bytes per instruction
            int const ch = 32 * k + lane;
            int const row = ch / 8;
            int const u = row / G;  // the entry (of this warp's NE) the row belongs to
            if (ent[u] < 0) continue;
            int8_t* dst_o = static_cast<int8_t*>(prm.partial_o) + static_cast<int64_t>(ent[u]) * (G * kHeadDim);
            *reinterpret_cast<uint4*>(dst_o + (ch - u * G * 8) * 16) =
                *reinterpret_cast<uint4 const*>(stage + row * kHeadDim + ((ch % 8) ^ (row % 8)) * 16);
          }
          if ((lane & 3) == 0) {
            CUTLASS_PRAGMA_UNROLL
            for (int r = 0; r < 2; ++r) {
              int const er = ent[E::of(r)];
              if (er < 0) continue;
              int64_t const at = static_cast<int64_t>(er) * G + (row0 + 8 * r) % G;
              prm.partial_lse[at] = lse[r];
              prm.partial_scale[at] = amax[r] / 127.f;
            }
          }
        }
        continue;
      }
      // Epilogue: this warp's entry (16 rows) -> its O tile rows in shared memory -> two TMA stores; the LSEs.
      // kDiag 3: the store is skipped on a condition the compiler cannot decide (num_tokens >= 0), so the math stays
      if (any_ent >= 0 && (kDiag != 3 || prm.num_tokens < 0)) {
        if (lane == 0) tma_store_wait<0>();  // the previous store of these rows has read them
        __syncwarp();
        Tensor o_rc = make_tensor(tOrO.data(), rowcol(tOrO.layout()));
        CUTLASS_PRAGMA_UNROLL
        for (int r = 0; r < 2; ++r) {
          Element* base = sh.o.data() + o_row(cw, get<0>(cO_rc(r, 0)));
          CUTLASS_PRAGMA_UNROLL
          for (int c = 0; c < size<1>(o_rc); c += 2) {  // columns c, c + 1 are adjacent: one 4-byte store
            int const d = get<1>(cO_rc(r, c));
            *reinterpret_cast<__nv_bfloat162*>(base + o_column(get<0>(cO_rc(r, 0)), d)) =
                __floats2bfloat162_rn(o_rc(r, c) * inv[r], o_rc(r, c + 1) * inv[r]);
          }
        }
        cutlass::arch::fence_view_async_shared();  // generic-proxy writes, read next by the TMA (async proxy)
        __syncwarp();
        if (lane == 0) {
          CUTLASS_PRAGMA_UNROLL
          for (int u = 0; u < NE; ++u) {
            if (ent[u] < 0) continue;
            int const box = cw * 2 * kTileE + warp * NE + u;
            copy(tma_o, tOs0(_, box), tOg0(_, ent[u]));
            copy(tma_o, tOs1(_, box + kTileE), tOg1(_, ent[u]));
          }
          tma_store_arrive();
        }
        if ((lane & 3) == 0) {
          CUTLASS_PRAGMA_UNROLL
          for (int r = 0; r < 2; ++r) {
            int const er = ent[E::of(r)];
            if (er >= 0) prm.partial_lse[static_cast<int64_t>(er) * G + (row0 + 8 * r) % G] = lse[r];
          }
        }
      }
    }
    cutlass::arch::ClusterBarrier::arrive(&sh.kv_empty[kvs]);  // every MMA on this K/V has completed
  }
  if (!kInt8 && lane == 0) tma_store_wait<0>();  // shared memory must outlive the stores
}

}  // namespace msa_kv_sm90

using namespace msa_kv_sm90;

template <int KV, int QS, bool INT8, int DIAG = 0, bool FAST = false, int G = kGroup>
cudaError_t launch_variant(TmaK const& tma_k, TmaVt const& tma_vt, TmaQ<G> const& tma_q, TmaO<G> const& tma_o,
                           KvOuterParams const& prm, int32_t entries, int grid, cudaStream_t stream) {
  int const smem = static_cast<int>(sizeof(SharedStorage<KV, QS>));
  auto kernel = kv_outer_kernel<KV, QS, INT8, DIAG, FAST, G>;
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (err != cudaSuccess || grid <= 0 || prm.num_work <= 0) return err;
  kernel<<<grid, kThreads, smem, stream>>>(tma_k, tma_vt, tma_q, tma_o, prm, entries);
  return cudaGetLastError();
}

int kv_outer_sm90_smem_bytes(int variant) {
  return static_cast<int>(variant == 3 || variant == 7 ? sizeof(SharedStorage<2, 4>) : sizeof(SharedStorage<1, 8>));
}

// The TMA views of q and the partial outputs for G query heads per KV head (entry boxes of G rows x 64 columns).
template <int G>
struct EntryTmas {
  TmaQ<G> q;
  TmaO<G> o;
};

template <int G>
EntryTmas<G> entry_tmas(KvOuterParams const& prm, int32_t entries) {
  Element const* q = static_cast<Element const*>(prm.q);
  Tensor gQ = make_tensor(make_gmem_ptr(q), GShapeQ<G>{Int<G>{}, _64{}, 2, prm.num_kv_heads, prm.num_tokens},
                          GStrideQ{prm.stride_qh, _1{}, int64_t(64), G * prm.stride_qh, prm.stride_qt});
  Tensor gO = make_tensor(make_gmem_ptr(static_cast<Element*>(prm.partial_o)), GShapeO<G>{Int<G>{}, _64{}, 2, entries},
                          GStrideO{int64_t(kHeadDim), _1{}, int64_t(64), int64_t(G * kHeadDim)});
  return {make_tma_copy(SM90_TMA_LOAD{}, gQ, SmemLayoutBox<G>{}), make_tma_copy(SM90_TMA_STORE{}, gO, SmemLayoutBox<G>{})};
}

cudaError_t kv_outer_sm90_launch(KvOuterParams const& prm, void const* kv_raw, int64_t stride_kvp, int64_t stride_kvh,
                                 int64_t stride_kvt, int grid, int variant, cudaStream_t stream) {
  Element const* kv = static_cast<Element const*>(kv_raw);
  GShape const shape{Int<kKeys>{}, Int<kHeadDim>{}, int32_t(prm.num_kv_heads), int32_t(prm.num_pages)};
  Tensor gK = make_tensor(make_gmem_ptr(kv), shape, make_stride(stride_kvt, _1{}, stride_kvh, stride_kvp));
  Tensor gVt = make_tensor(make_gmem_ptr(kv + kHeadDim), shape, make_stride(_1{}, stride_kvt, stride_kvh, stride_kvp));
  int64_t const entries = static_cast<int64_t>(prm.num_kv_heads) * prm.num_tokens * prm.top_k;
  if (entries >= (int64_t(1) << 31)) return cudaErrorInvalidValue;
  TmaK tma_k = make_tma_copy(SM90_TMA_LOAD{}, gK, take<0, 2>(SmemLayoutK<1>{}));
  TmaVt tma_vt = make_tma_copy(SM90_TMA_LOAD{}, gVt, take<0, 2>(SmemLayoutVt<1>{}));
  int32_t const n = static_cast<int32_t>(entries);
  bool const int8 = prm.partial_scale != nullptr;
  if (prm.group == 8) {  // v18r: M3 at tensor parallel 8; variant 7 only (the default, bf16 and int8 parts)
    if (variant != 7) return cudaErrorInvalidValue;
    EntryTmas<8> const t = entry_tmas<8>(prm, n);
    return int8 ? launch_variant<2, 4, true, 0, true, 8>(tma_k, tma_vt, t.q, t.o, prm, n, grid, stream)
                : launch_variant<2, 4, false, 0, true, 8>(tma_k, tma_vt, t.q, t.o, prm, n, grid, stream);
  }
  if (prm.group != kGroup) return cudaErrorInvalidValue;
  EntryTmas<kGroup> const t16 = entry_tmas<kGroup>(prm, n);
  TmaQ<kGroup> const& tma_q = t16.q;
  TmaO<kGroup> const& tma_o = t16.o;
  switch (variant) {  // v12k's variants 0 and 1 (no metadata warp) lost on every row of v12n's run a: removed
    case 2: return int8 ? launch_variant<1, 8, true>(tma_k, tma_vt, tma_q, tma_o, prm, n, grid, stream)
                        : launch_variant<1, 8, false>(tma_k, tma_vt, tma_q, tma_o, prm, n, grid, stream);
    case 3: return int8 ? launch_variant<2, 4, true>(tma_k, tma_vt, tma_q, tma_o, prm, n, grid, stream)
                        : launch_variant<2, 4, false>(tma_k, tma_vt, tma_q, tma_o, prm, n, grid, stream);
    case 6: return int8 ? launch_variant<1, 8, true, 0, true>(tma_k, tma_vt, tma_q, tma_o, prm, n, grid, stream)
                        : launch_variant<1, 8, false, 0, true>(tma_k, tma_vt, tma_q, tma_o, prm, n, grid, stream);
    case 7: return int8 ? launch_variant<2, 4, true, 0, true>(tma_k, tma_vt, tma_q, tma_o, prm, n, grid, stream)
                        : launch_variant<2, 4, false, 0, true>(tma_k, tma_vt, tma_q, tma_o, prm, n, grid, stream);
    // v13q timing diagnostics (variant 6, bf16; wrong parts): no math / no Q gathers / no stores
    case 90: return int8 ? cudaErrorInvalidValue : launch_variant<1, 8, false, 1, true>(tma_k, tma_vt, tma_q, tma_o, prm, n, grid, stream);
    case 91: return int8 ? cudaErrorInvalidValue : launch_variant<1, 8, false, 2, true>(tma_k, tma_vt, tma_q, tma_o, prm, n, grid, stream);
    case 92: return int8 ? cudaErrorInvalidValue : launch_variant<1, 8, false, 3, true>(tma_k, tma_vt, tma_q, tma_o, prm, n, grid, stream);
    default: return cudaErrorInvalidValue;
  }
}

// C entry points for ctypes (kernels/msa/cuda/__init__.py). Returns a cudaError_t.
extern "C" int msa_kv_outer_sm90(KvOuterParams const* prm, void const* kv, int64_t stride_kvp, int64_t stride_kvh,
                                 int64_t stride_kvt, int grid, int variant, void* stream) {
  return static_cast<int>(kv_outer_sm90_launch(*prm, kv, stride_kvp, stride_kvh, stride_kvt, grid, variant,
                                               static_cast<cudaStream_t>(stream)));
}

extern "C" int msa_kv_outer_sm90_smem_bytes(int variant) { return kv_outer_sm90_smem_bytes(variant); }
