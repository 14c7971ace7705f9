// MSA prefill, tile-outer step, as an FA3-style Hopper kernel (CUTLASS/CuTe, sm_90a).
//
// Same contract as `_tile_outer_kernel` in kernels/msa/tile_outer.py (the v8 path, bf16 only): one work item =
// (query tile of 8 tokens, KV head) from the split's device-side work list; its rows are 8 tokens x 16 query heads
// = 128 MMA rows; it walks the tile's union of shared 128-token KV blocks (a page table: `pages`), the first
// `clean` of them without a mask, the others with the per-row mask (own selection bit & causal); the softmax
// stays on chip. A `direct` row goes to `out`, another row to its carrier slot of the partials (+ log2-sum-exp), or
// (v12m, with int8 partials) to its entry of a bf16 side buffer. The fused merge reads bf16 or int8 partials.
//
// Structure (FlashAttention-3's forward, without its scheduler): 3 warpgroups per CTA.
//   warpgroup 0 = producer: one thread issues TMA loads of each union page's K [128 keys, 128] and V^T
//                 [128, 128 keys] into a STAGES-deep shared-memory ring (full/empty mbarriers); 24 registers.
//   warpgroups 1, 2 = consumers, 64 rows (4 tokens x 16 heads; v18r, GROUP 8: 8 x 8) each, 240 registers: S = Q K^T
//                 by wgmma (Q and K from shared memory), mask + online softmax in registers, O += P V by wgmma with P
//                 from registers. Each warp of a consumer holds 16 rows = one token (GROUP 8: one per row half), so
//                 a row's token, position and selection bits are warp-uniform.
// With OVERLAP, a consumer issues the next block's S = Q K^T before the softmax of the current one, so the tensor
// cores work during the exponentials (FA3's intra-warpgroup overlap); the two consumers interleave on their own.
// The CTA walks the work list with a stride of gridDim.x (gridDim.x = list bound: one CTA per work item, exits
// when its index is past the list's filled length). Why each choice: kernels/msa/NOTES.md v10.

#include <algorithm>
#include <cstdint>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>
#include <cutlass/cutlass.h>
#include <cutlass/numeric_types.h>

#include "msa_sm90_common.cuh"
#include "tile_outer_sm90.h"

namespace msa_sm90 {

using namespace cute;
using namespace msa_sm90_common;

// How a tile's 128 MMA rows (2 consumer warpgroups of kRowsWG) map to tokens x query heads: row r of consumer cw is
// head r % GROUP of token cw * kTokWG + r / GROUP. GROUP 16 (M3 at tensor parallel <= 4): 8 tokens, a warp's 16 rows
// are one token. GROUP 8 (M3 at TP 8, v18r): 16 tokens, a warp's two row halves (a thread's rows g and g + 8) are two
// tokens, so token-level values become per row half and stay warp-uniform.
template <int GROUP>
struct Rows {
  static_assert(GROUP == 16 || GROUP == 8, "16 or 8 query heads per KV head");
  static constexpr int kTileT = 2 * kRowsWG / GROUP;  // tokens per tile
  static constexpr int kTokWG = kRowsWG / GROUP;      // tokens per consumer warpgroup
  static constexpr int kTokWarp = 16 / GROUP;         // tokens per warp: 1, or 2 (one per row half)
  // the token (of this warp's kTokWarp) that a thread's row half rr (row g + 8 rr) belongs to
  static CUTLASS_DEVICE constexpr int tok(int rr) { return kTokWarp == 2 ? rr : 0; }
};

using SmemLayoutQ = decltype(tile_to_shape(GMMA::Layout_K_SW128_Atom<Element>{}, Shape<Int<kRowsWG>, Int<kHeadDim>>{}));
using ElementF8 = cutlass::float_e4m3_t;

// The operand types of one build of the kernel: bf16 (variants 0-5) or FP8 e4m3 (v18 on: FP8_VARIANTS in
// __init__.py). FP8 wgmma takes both operands K-major only, so V arrives as V^T with keys contiguous (widen.py writes
// those pages), which makes its TMA view and shared layout the same as K's.
template <bool FP8>
struct Ops {
  using E = Element;
  using SmemQ = SmemLayoutQ;
  template <int STAGES> using SmemK = SmemLayoutK<STAGES>;
  template <int STAGES> using SmemVt = SmemLayoutVt<STAGES>;
  using MmaSt = MmaS;
  using MmaOt = MmaO;
  using TmaKt = TmaK;
  using TmaVtt = TmaVt;
  static constexpr uint32_t kStageBytes = kPageBytes;
};

template <>
struct Ops<true> {
  using E = ElementF8;
  using SmemQ = decltype(tile_to_shape(GMMA::Layout_K_SW128_Atom<E>{}, Shape<Int<kRowsWG>, Int<kHeadDim>>{}));
  template <int STAGES>
  using SmemK = decltype(tile_to_shape(GMMA::Layout_K_SW128_Atom<E>{}, Shape<Int<kKeys>, Int<kHeadDim>, Int<STAGES>>{}));
  template <int STAGES>  // V^T (head dim x keys), keys contiguous: K-major, as FP8 wgmma requires of B
  using SmemVt = decltype(tile_to_shape(GMMA::Layout_K_SW128_Atom<E>{}, Shape<Int<kHeadDim>, Int<kKeys>, Int<STAGES>>{}));
  using MmaSt = decltype(make_tiled_mma(GMMA::ss_op_selector<E, E, float, TileS>()));
  using MmaOt = decltype(make_tiled_mma(GMMA::rs_op_selector<E, E, float, TileO>()));
  using TmaKt = decltype(make_tma_copy(SM90_TMA_LOAD{},
      make_tensor(make_gmem_ptr(static_cast<E const*>(nullptr)), GShape{}, GStrideK{}), take<0, 2>(SmemK<1>{})));
  using TmaVtt = TmaKt;
  static constexpr uint32_t kStageBytes = 2 * kKeys * kHeadDim;
};

// v18s: one staged part of a warp in 32-bit words: 16 rows x 128 bf16, or (v18t, I8) 16 rows x 128 int8 bytes
template <bool I8 = false>
constexpr int kFoldWords = 16 * kHeadDim / (I8 ? 4 : 2);

template <int STAGES, bool FP8 = false, bool STAGE_Q = false, int FOLD_SLOTS = 0, bool FOLD_I8 = false,
          bool Q_LO = false>
struct SharedStorage {  // bf16, 3 stages: 225 KiB
  using O = Ops<FP8>;
  alignas(1024) cute::array_aligned<typename O::E, cosize_v<typename O::SmemQ>> q[2];
  // v18z (QTWO): Q's second e4m3 term, the residual of q at the same row scale (S = the two FP8 products summed)
  alignas(1024) cute::array_aligned<typename O::E, Q_LO ? cosize_v<typename O::SmemQ> : 1> q_lo[2];
  alignas(1024) cute::array_aligned<typename O::E, cosize_v<typename O::template SmemK<STAGES>>> k;
  alignas(1024) cute::array_aligned<typename O::E, cosize_v<typename O::template SmemVt<STAGES>>> vt;
  uint64_t full[STAGES];
  uint64_t empty[STAGES];
  float q_scale[2][FP8 ? kRowsWG : 1];  // FP8: each Q row's dequantisation scale
  // FP8 with the Q prefetch: the next tile's bf16 Q rows (row-major), quantised into q at the tile's start
  alignas(128) cute::array_aligned<Element, STAGE_Q ? kRowsWG * kHeadDim : 1> q_stage[2];
  // v18s: the fused merge's first FOLD_SLOTS parts of each warp's rows, staged by cp.async at the item's start
  // ([consumer][slot][warp]: 16 rows as fold_at lays them out; their LSEs [consumer][slot][warp][16
  // rows]; v18t, int8 parts: their row scales alike)
  alignas(128) cute::array_aligned<uint32_t, FOLD_SLOTS ? 2 * FOLD_SLOTS * 4 * kFoldWords<FOLD_I8> : 1> fold;
  alignas(16) cute::array_aligned<float, FOLD_SLOTS ? 2 * FOLD_SLOTS * 4 * 16 : 1> fold_lse;
  alignas(16) cute::array_aligned<float, FOLD_SLOTS && FOLD_I8 ? 2 * FOLD_SLOTS * 4 * 16 : 1> fold_scale;
};

template <class Mma, class TA, class TB, class TC>
CUTLASS_DEVICE void wgmma(Mma& mma, TA const& a, TB const& b, TC& c, bool zero) { // issue only; caller waits
  warpgroup_fence_operand(c);
  warpgroup_arrive();
  mma.accumulate_ = zero ? GMMA::ScaleOut::Zero : GMMA::ScaleOut::One;
  CUTLASS_PRAGMA_UNROLL
  for (int kb = 0; kb < size<2>(a); ++kb) {
    cute::gemm(mma, a(_, _, kb), b(_, _, kb), c);
    mma.accumulate_ = GMMA::ScaleOut::One;
  }
  warpgroup_commit_batch();
}

// v18z: S = Q_hi K^T + Q_lo K^T, both products in one commit group into one accumulator (the same row scale)
template <class Mma, class TA, class TB, class TC>
CUTLASS_DEVICE void wgmma_two(Mma& mma, TA const& a, TA const& a_lo, TB const& b, TC& c) {
  warpgroup_fence_operand(c);
  warpgroup_arrive();
  mma.accumulate_ = GMMA::ScaleOut::Zero;
  CUTLASS_PRAGMA_UNROLL
  for (int kb = 0; kb < size<2>(a); ++kb) {
    cute::gemm(mma, a(_, _, kb), b(_, _, kb), c);
    mma.accumulate_ = GMMA::ScaleOut::One;
  }
  CUTLASS_PRAGMA_UNROLL
  for (int kb = 0; kb < size<2>(a_lo); ++kb) cute::gemm(mma, a_lo(_, _, kb), b(_, _, kb), c);
  warpgroup_commit_batch();
}

template <class Mma, class TA, class TB, class TC>
CUTLASS_DEVICE void wgmma_rs(Mma& mma, TA& a, TB const& b, TC& c) {
  warpgroup_fence_operand(a);
  warpgroup_fence_operand(c);
  warpgroup_arrive();
  mma.accumulate_ = GMMA::ScaleOut::One;
  CUTLASS_PRAGMA_UNROLL
  for (int kb = 0; kb < size<2>(a); ++kb) {
    cute::gemm(mma, a(_, _, kb), b(_, _, kb), c);
  }
  warpgroup_commit_batch();
}

// Per consumer thread: its 2 rows (same token) and their online-softmax state.
CUTLASS_DEVICE void NamedBarrierSync(int cw) { cutlass::arch::NamedBarrier::sync(128, 1 + cw); }

struct RowState {
  float m[2];   // running max of the scaled base-2 scores (-inf: nothing visible yet)
  float l[2];   // this thread's share of the running sum (reduced over the quad at the end)
};

// The online-softmax update of row r of one S tile from its block max mx (of the values in s_rc: scaled unless
// FAST): alpha[r] = the factor the row's O must be scaled by, the row's values become their exponents, l and m
// move on. row_chosen false (v18u, softmax_step_rows): the row's token did not choose the block: it takes no max and
// its exponents are taken against +inf (P = 0, the state unchanged: what a per-key -inf gives).
template <bool FAST, int P_OFF, class TR>
CUTLASS_DEVICE void softmax_row(TR& s_rc, int r, float mx, bool row_chosen, RowState& st, float (&alpha)[2],
                                float const (&scale_log2)[2]) {
  if constexpr (FAST) mx *= scale_log2[r];  // -inf stays -inf
  mx = row_chosen ? mx : -INFINITY;
  float m_new = fmaxf(st.m[r], quad_max(mx));
  float m_safe = m_new == -INFINITY ? 0.f : m_new;  // rows with nothing visible yet stay finite
  alpha[r] = FAST ? ex2_approx(st.m[r] - m_safe) : exp2f(st.m[r] - m_safe);
  float m_exp = P_OFF != 0 ? m_safe - static_cast<float>(P_OFF) : m_safe;
  m_exp = row_chosen ? m_exp : INFINITY;  // every exponent -inf: P = 0
  float sum = 0.f;
  CUTLASS_PRAGMA_UNROLL
  for (int c = 0; c < size<1>(s_rc); ++c) {
    float e = FAST ? ex2_approx(fmaf(s_rc(r, c), scale_log2[r], -m_exp)) : exp2f(s_rc(r, c) - m_exp);
    s_rc(r, c) = e;
    sum += e;
  }
  st.l[r] = st.l[r] * alpha[r] + sum;
  st.m[r] = m_new;
}

// Mask (when MASKED) and online softmax of one S tile, in place: s becomes exp2(s * scale - max); alpha = the
// factor the rows' O must be scaled by (applied by the caller once the previous P V product has finished).
// FAST: the max is taken on the raw scores (scale > 0) and each exponent is one FFMA + ex2.approx, FA3's form; else
// a scaled copy first and exp2f (v0-v2 as measured). scale_log2: per row (FP8: Q's row scale is in it). P_OFF: the
// exponents are taken against max - P_OFF, so P = 2^P_OFF x the usual one (FP8: P in [0, 256] keeps the small
// probabilities out of e4m3's subnormals; the caller subtracts P_OFF from m before using it as a softmax state).
// chosen / pos: per row half (its token's selection bit and position; the same token for both at GROUP 16).
template <bool MASKED, bool FAST, int P_OFF = 0, class TS, class TC>
CUTLASS_DEVICE void softmax_step(TS& s, TC const& coord, RowState& st, float (&alpha)[2],
                                 float const (&scale_log2)[2], bool const (&chosen)[2], int kpos0,
                                 int const (&pos)[2]) {
  Tensor s_rc = make_tensor(s.data(), rowcol(s.layout()));
  Tensor c_rc = make_tensor(coord.data(), rowcol(coord.layout()));
  CUTLASS_PRAGMA_UNROLL
  for (int r = 0; r < size<0>(s_rc); ++r) {
    float mx = -INFINITY;
    CUTLASS_PRAGMA_UNROLL
    for (int c = 0; c < size<1>(s_rc); ++c) {
      float v = FAST ? s_rc(r, c) : s_rc(r, c) * scale_log2[r];
      if constexpr (MASKED) {
        int kpos = kpos0 + get<1>(c_rc(r, c));
        v = (chosen[r] && kpos <= pos[r]) ? v : -INFINITY;
      }
      s_rc(r, c) = v;
      mx = fmaxf(mx, v);
    }
    softmax_row<FAST, P_OFF>(s_rc, r, mx, true, st, alpha, scale_log2);
  }
}

// v18u (ONE_BODY): the same result as softmax_step<true> from one body for clean and masked blocks: a row whose
// token did not choose the block goes through softmax_row's row_chosen, and the per-key causal compare runs only
// where the block reaches past a row's position (`causal`: the diagonal block, warp-uniform), so a masked block
// elsewhere costs what a clean one does.
template <bool FAST, int P_OFF = 0, class TS, class TC>
CUTLASS_DEVICE void softmax_step_rows(TS& s, TC const& coord, RowState& st, float (&alpha)[2],
                                      float const (&scale_log2)[2], bool const (&chosen)[2], bool causal, int kpos0,
                                      int const (&pos)[2]) {
  Tensor s_rc = make_tensor(s.data(), rowcol(s.layout()));
  Tensor c_rc = make_tensor(coord.data(), rowcol(coord.layout()));
  if (causal) {
    CUTLASS_PRAGMA_UNROLL
    for (int r = 0; r < size<0>(s_rc); ++r) {
      CUTLASS_PRAGMA_UNROLL
      for (int c = 0; c < size<1>(s_rc); ++c) {
        s_rc(r, c) = kpos0 + get<1>(c_rc(r, c)) <= pos[r] ? s_rc(r, c) : -INFINITY;
      }
    }
  }
  CUTLASS_PRAGMA_UNROLL
  for (int r = 0; r < size<0>(s_rc); ++r) {
    float mx = -INFINITY;
    CUTLASS_PRAGMA_UNROLL
    for (int c = 0; c < size<1>(s_rc); ++c) {
      float const v = FAST ? s_rc(r, c) : s_rc(r, c) * scale_log2[r];
      s_rc(r, c) = v;
      mx = fmaxf(mx, v);
    }
    softmax_row<FAST, P_OFF>(s_rc, r, mx, chosen[r], st, alpha, scale_log2);
  }
}

// Two int8 partial values (little-endian bytes of u) as floats, without an int -> float conversion (v10t's codec,
// merge.load_part): a byte with its sign bit flipped (x + 128) in the mantissa of 1.5 * 2^23 is 1.5 * 2^23 + 128 + x.
CUTLASS_DEVICE float2 int8x2_to_float2(uint32_t u) {
  uint32_t const b = (u ^ 0x8080u) & 0xFFFFu;
  float const lo = __uint_as_float((b & 0xFFu) | 0x4B400000u);
  float const hi = __uint_as_float((b >> 8) | 0x4B400000u);
  return make_float2(lo - 12583040.f, hi - 12583040.f);  // 12583040 = 1.5 * 2^23 + 128
}

template <class TO>
CUTLASS_DEVICE void rescale(TO& o, float const (&alpha)[2]) {
  Tensor o_rc = make_tensor(o.data(), rowcol(o.layout()));
  CUTLASS_PRAGMA_UNROLL
  for (int r = 0; r < size<0>(o_rc); ++r) {
    CUTLASS_PRAGMA_UNROLL
    for (int c = 0; c < size<1>(o_rc); ++c) o_rc(r, c) *= alpha[r];
  }
}

template <class TS, class TP>
CUTLASS_DEVICE void to_bf16(TS const& s, TP& p) {
  CUTLASS_PRAGMA_UNROLL
  for (int i = 0; i < size(s); ++i) p(i) = static_cast<Element>(s(i));
}

CUTLASS_DEVICE uint32_t e4m3x4(float a, float b, float c, float d) {  // a in the lowest byte; saturating
  uint32_t const lo = __nv_cvt_float2_to_fp8x2(make_float2(a, b), __NV_SATFINITE, __NV_E4M3);
  uint32_t const hi = __nv_cvt_float2_to_fp8x2(make_float2(c, d), __NV_SATFINITE, __NV_E4M3);
  return lo | (hi << 16);
}

// 8 values times inv as 8 e4m3 bytes (value 0 in the lowest byte): a Q row's chunk as load_q_fp8 and
// quantize_q_pairs store it
CUTLASS_DEVICE uint2 e4m3x8(float2 const (&f)[4], float inv) {
  return make_uint2(e4m3x4(f[0].x * inv, f[0].y * inv, f[1].x * inv, f[1].y * inv),
                    e4m3x4(f[2].x * inv, f[2].y * inv, f[3].x * inv, f[3].y * inv));
}

CUTLASS_DEVICE float2 e4m3x2_to_float2(uint32_t two) {  // the two e4m3 bytes in the low half of `two`
  __half2_raw const h = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(two & 0xffffu), __NV_E4M3);
  return __half22float2(*reinterpret_cast<__half2 const*>(&h));
}

// v18z (QTWO): the chunk's second term, what e4m3x8 left of the 8 values times inv (hi = its bytes), as e4m3 at the
// same scale: hi + lo carries a Q element to ~2^-8 relative (e4m3 alone: 2^-4), the residual's own rounding aside
CUTLASS_DEVICE uint2 e4m3x8_residual(float2 const (&f)[4], float inv, uint2 hi) {
  float2 const h0 = e4m3x2_to_float2(hi.x), h1 = e4m3x2_to_float2(hi.x >> 16);
  float2 const h2 = e4m3x2_to_float2(hi.y), h3 = e4m3x2_to_float2(hi.y >> 16);
  return make_uint2(e4m3x4(f[0].x * inv - h0.x, f[0].y * inv - h0.y, f[1].x * inv - h1.x, f[1].y * inv - h1.y),
                    e4m3x4(f[2].x * inv - h2.x, f[2].y * inv - h2.y, f[3].x * inv - h3.x, f[3].y * inv - h3.y));
}

// v18: P (the S accumulator of 64 rows x 128 keys, fp32) as the A operand of the FP8 P V wgmma (m64nNk32), with no
// register shuffle. A thread's accumulator holds, per 32-key group and row, keys {2t, 2t+1, 8+2t, 9+2t} (+16) (t = lane
// % 4), while an FP8 A fragment holds k positions {4t..4t+3} (+16) per row in one register. So the bytes are packed
// as they lie (key 2t -> position 4t, 2t+1 -> 4t+1, 8+2t -> 4t+2, 9+2t -> 4t+3) and V^T's keys are stored in that
// order (widen.py's transposed pages: position p of a 32-key group holds key fp8_key_order(p)); the sum over
// positions equals the sum over keys. The masks use the accumulator's own coordinates, so they are unaffected.
template <class TS, class TP>
CUTLASS_DEVICE void to_fp8(TS const& s, TP& p) {
  static_assert(decltype(size(s))::value == 64 && decltype(size(p))::value == 64, "64 rows x 128 keys per warpgroup");
  uint32_t* reg = reinterpret_cast<uint32_t*>(raw_pointer_cast(p.data()));
  CUTLASS_PRAGMA_UNROLL
  for (int kb = 0; kb < 4; ++kb) {
    int const b = 16 * kb;  // accumulator index = col pair bit + 2 x row half + 4 x 8-key chunk
    reg[4 * kb + 0] = e4m3x4(s(b + 0), s(b + 1), s(b + 4), s(b + 5));      // row g,     positions 4t..4t+3
    reg[4 * kb + 1] = e4m3x4(s(b + 2), s(b + 3), s(b + 6), s(b + 7));      // row g + 8
    reg[4 * kb + 2] = e4m3x4(s(b + 8), s(b + 9), s(b + 12), s(b + 13));    // row g,     positions 16 + 4t..
    reg[4 * kb + 3] = e4m3x4(s(b + 10), s(b + 11), s(b + 14), s(b + 15));  // row g + 8
  }
}

// v18: a tile's Q rows for consumer cw into sQ as e4m3, each (token, head) row scaled by its own amax / 448 (the scale
// goes to q_scale[row], and into that row's softmax scale). A row's 128 values are 16 threads' 8 each (a half warp).
// From global memory, or (stage != null) from the bf16 rows this thread's own cp.asyncs put in shared memory.
template <int GROUP, class TQ>
CUTLASS_DEVICE void load_q_fp8(TQ& sQ, float* q_scale, TileOuterParams const& prm, int64_t tile, int cw, int tid,
                               Element const* stage = nullptr, TQ* sQlo = nullptr) {
  int const h = static_cast<int>(tile / prm.num_tiles);
  int const i = static_cast<int>(tile % prm.num_tiles);
  int const t0 = prm.tile_first[i], t_end = prm.tile_first[i + 1];  // v19: the tile's tokens, of one request
  Element const* q = static_cast<Element const*>(prm.q);
  CUTLASS_PRAGMA_UNROLL
  for (int idx = tid; idx < kRowsWG * kHeadDim / 8; idx += 128) {
    int const r = idx / (kHeadDim / 8);
    int const c = (idx % (kHeadDim / 8)) * 8;
    int const tq = t0 + cw * Rows<GROUP>::kTokWG + r / GROUP;
    bool const ok = tq < t_end;
    uint4 const raw = stage != nullptr ? *reinterpret_cast<uint4 const*>(stage + r * kHeadDim + c)
                      : ok ? *reinterpret_cast<uint4 const*>(q + tq * prm.stride_qt + (h * GROUP + r % GROUP) *
                                                             prm.stride_qh + c)
                           : make_uint4(0, 0, 0, 0);
    __nv_bfloat162 const* pair = reinterpret_cast<__nv_bfloat162 const*>(&raw);
    float2 f[4];
    float amax = 0.f;
    CUTLASS_PRAGMA_UNROLL
    for (int k = 0; k < 4; ++k) {
      f[k] = __bfloat1622float2(pair[k]);
      amax = fmaxf(amax, fmaxf(fabsf(f[k].x), fabsf(f[k].y)));
    }
    CUTLASS_PRAGMA_UNROLL
    for (int m = 8; m >= 1; m >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, m));
    float const sc = amax > 0.f ? amax * (1.f / 448.f) : 1.f;
    uint2 const hi = e4m3x8(f, 1.f / sc);
    *reinterpret_cast<uint2*>(&sQ(r, c)) = hi;  // 8 bytes: inside one 16-byte unit of the 128B swizzle
    if (sQlo != nullptr) *reinterpret_cast<uint2*>(&(*sQlo)(r, c)) = e4m3x8_residual(f, 1.f / sc, hi);
    if ((tid & 15) == 0) q_scale[r] = sc;
  }
}

// v18p (variant 12): the next tile's bf16 Q rows for consumer cw staged by cp.async as two threads per row:
// thread tid takes row tid / 2 and its 16-byte chunks hf, hf + 2, ..., hf + 14 (hf = tid % 2, so a row's two threads
// read neighbouring 16 bytes: one 32-byte sector), chunk k at stage[k][tid] (a warp reads 512 contiguous bytes back).
// load_q_fp8's layout spreads a row over 16 threads, so its amax needs 4 dependent shuffles per 8 values; here one.
static_assert(kRowsWG * 2 == 128, "two threads per Q row of a warpgroup");
template <int GROUP>
CUTLASS_DEVICE void stage_q_pairs(Element* stage, TileOuterParams const& prm, int64_t tile, int cw, int tid) {
  int const h = static_cast<int>(tile / prm.num_tiles);
  int const i = static_cast<int>(tile % prm.num_tiles);
  int const t0 = prm.tile_first[i], t_end = prm.tile_first[i + 1];  // v19: the tile's tokens, of one request
  int const r = tid >> 1, hf = tid & 1;
  int const tq = t0 + cw * Rows<GROUP>::kTokWG + r / GROUP;
  bool const ok = tq < t_end;
  Element const* q = static_cast<Element const*>(prm.q);
  Element const* row = ok ? q + tq * prm.stride_qt + (h * GROUP + r % GROUP) * prm.stride_qh : q;
  CUTLASS_PRAGMA_UNROLL
  for (int k = 0; k < kHeadDim / 16; ++k) {
    uint32_t const dst = static_cast<uint32_t>(__cvta_generic_to_shared(stage + (k * 128 + tid) * 8));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n"
                 :: "r"(dst), "l"(row + (hf + 2 * k) * 8), "r"(ok ? 16 : 0));
  }
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// v18p: stage_q_pairs' rows (this thread's own chunks; the caller waited for its cp.asyncs) quantised into sQ as
// load_q_fp8 does: each row scaled by its amax / 448 (the scale to q_scale[row]).
template <class TQ>
CUTLASS_DEVICE void quantize_q_pairs(TQ& sQ, float* q_scale, Element const* stage, int tid, TQ* sQlo = nullptr) {
  int const r = tid >> 1, hf = tid & 1;
  uint4 raw[kHeadDim / 16];
  float amax[4] = {0.f, 0.f, 0.f, 0.f};  // four chains: the 64 values' maximum without a 64-long dependency
  CUTLASS_PRAGMA_UNROLL
  for (int k = 0; k < kHeadDim / 16; ++k) {
    raw[k] = *reinterpret_cast<uint4 const*>(stage + (k * 128 + tid) * 8);
    __nv_bfloat162 const* pair = reinterpret_cast<__nv_bfloat162 const*>(&raw[k]);
    CUTLASS_PRAGMA_UNROLL
    for (int j = 0; j < 4; ++j) {
      float2 const f = __bfloat1622float2(pair[j]);
      amax[j] = fmaxf(amax[j], fmaxf(fabsf(f.x), fabsf(f.y)));
    }
  }
  float m = fmaxf(fmaxf(amax[0], amax[1]), fmaxf(amax[2], amax[3]));
  m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));
  float const sc = m > 0.f ? m * (1.f / 448.f) : 1.f;
  float const inv = 1.f / sc;
  CUTLASS_PRAGMA_UNROLL
  for (int k = 0; k < kHeadDim / 16; ++k) {
    __nv_bfloat162 const* pair = reinterpret_cast<__nv_bfloat162 const*>(&raw[k]);
    float2 f[4];
    CUTLASS_PRAGMA_UNROLL
    for (int j = 0; j < 4; ++j) f[j] = __bfloat1622float2(pair[j]);
    uint2 const hi = e4m3x8(f, inv);
    *reinterpret_cast<uint2*>(&sQ(r, (hf + 2 * k) * 8)) = hi;  // 8 bytes inside a 16-byte swizzle unit
    if (sQlo != nullptr) *reinterpret_cast<uint2*>(&(*sQlo)(r, (hf + 2 * k) * 8)) = e4m3x8_residual(f, inv, hi);
  }
  if (hf == 0) q_scale[r] = sc;
}

// A tile's Q rows for consumer cw into sQ: plain 16-byte loads and stores, or (ASYNC) cp.async with zero fill for
// rows past the last token, completed by the caller's cp.async.wait_group.
template <int GROUP, class TQ>
CUTLASS_DEVICE void load_q(TQ& sQ, TileOuterParams const& prm, int64_t tile, int cw, int tid, bool async) {
  int const h = static_cast<int>(tile / prm.num_tiles);
  int const i = static_cast<int>(tile % prm.num_tiles);
  int const t0 = prm.tile_first[i], t_end = prm.tile_first[i + 1];  // v19: the tile's tokens, of one request
  Element const* q = static_cast<Element const*>(prm.q);
  for (int idx = tid; idx < kRowsWG * kHeadDim / 8; idx += 128) {
    int const r = idx / (kHeadDim / 8);
    int const c = (idx % (kHeadDim / 8)) * 8;
    int const tq = t0 + cw * Rows<GROUP>::kTokWG + r / GROUP;
    bool const ok = tq < t_end;
    Element const* src = ok ? q + tq * prm.stride_qt + (h * GROUP + r % GROUP) * prm.stride_qh + c : q;
    if (async) {
      uint32_t const dst = static_cast<uint32_t>(__cvta_generic_to_shared(&sQ(r, c)));
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(dst), "l"(src), "r"(ok ? 16 : 0));
    } else {
      *reinterpret_cast<uint4*>(&sQ(r, c)) = ok ? *reinterpret_cast<uint4 const*>(src) : make_uint4(0, 0, 0, 0);
    }
  }
  if (async) asm volatile("cp.async.commit_group;\n" ::: "memory");
}

constexpr int kMaxFoldSlots = 32;  // top_k the fold reads in one batch (tile_outer_attention_cuda checks it)

// The fused merge (v9 / v11): a row's KV-outer parts (its `rest` slots >= 0), as a bit mask of slots; the kernel asks
// for it under the item's first S, so the latency overlaps the tensor cores; a direct row (every entry shared) has no
// slot >= 0, so no `direct` load is needed. v18r: lane k of the warp loads slot k (top_k <= 32) and a ballot gathers
// the mask: one load per lane and one memory latency (v16 loaded every slot in every thread: the same latency with
// top_k loads and registers per thread, which GROUP 8's two tokens per warp could not afford). Called by the whole
// warp with a warp-uniform row and `ok`.
CUTLASS_DEVICE uint32_t fold_slots(TileOuterParams const& prm, int64_t row, bool ok) {
  int const lane = threadIdx.x % 32;
  int32_t const slot = ok && lane < prm.top_k ? prm.rest[row * prm.top_k + lane] : -1;
  return __ballot_sync(0xffffffffu, slot >= 0);
}

// One KV-outer part of a row pair, in registers: its two rows' LSEs, int8 scales and raw values (bf16: a bf16x2 per
// column pair; int8: two bytes in the low half).
struct PartRegs {
  float lse[2], scale[2];
  uint32_t raw[2][kHeadDim / 8];
};

// Which part each row half of a thread folds next: its token's row, the slot, and whether it has one (GROUP 8: the
// two halves are two tokens with their own slots; GROUP 16: one token, both halves alike).
struct PartPick {
  int64_t row[2];
  int k[2];
  bool on[2];
};

// Load part pick.k of the rows that have one (all loads issued before any is used: one memory latency, v16).
template <int GROUP, class TC>
CUTLASS_DEVICE void load_part(TileOuterParams const& prm, PartPick const& pick, int row0, TC const& cO_rc,
                              PartRegs& pr) {
  constexpr int kCols = kHeadDim / 4;  // columns of a row this thread holds (wgmma m64 accumulator: quad-shared rows)
  bool const int8 = prm.partial_scale != nullptr;
  CUTLASS_PRAGMA_UNROLL
  for (int r = 0; r < 2; ++r) {
    if (!pick.on[r]) continue;  // warp-uniform
    int64_t const part = (pick.row[r] * prm.top_k + pick.k[r]) * GROUP + (row0 + 8 * r) % GROUP;
    pr.lse[r] = prm.partial_lse[part];
    pr.scale[r] = int8 ? prm.partial_scale[part] : 1.f;
    CUTLASS_PRAGMA_UNROLL
    for (int c = 0; c < kCols; c += 2) {
      int const d = get<1>(cO_rc(r, c));
      pr.raw[r][c / 2] = int8 ? *reinterpret_cast<uint16_t const*>(static_cast<int8_t const*>(prm.partial_o) +
                                                                   part * kHeadDim + d)
                              : *reinterpret_cast<uint32_t const*>(static_cast<Element const*>(prm.partial_o) +
                                                                   part * kHeadDim + d);
    }
  }
}

// Fold one part into the rows' softmax state and O (v9-v15's arithmetic and order). `lse(r)`, `scale(r)` and
// `raw(r, c)` (the bf16x2 or int8x2 of columns c, c + 1 of row half r) read it from registers or (v18s) shared memory.
template <class TO, class Lse, class Scale, class Raw>
CUTLASS_DEVICE void apply_part_from(bool int8, Lse const& lse, Scale const& scale, Raw const& raw,
                                    bool const (&on)[2], RowState& st, float (&lsum)[2], TO& o_rc) {
  constexpr int kCols = kHeadDim / 4;
  static_assert(decltype(size<1>(o_rc))::value == kCols, "accumulator layout");
  CUTLASS_PRAGMA_UNROLL
  for (int r = 0; r < 2; ++r) {
    if (!on[r]) continue;  // warp-uniform
    float const lse_r = lse(r);
    float const m_new = fmaxf(st.m[r], lse_r);
    float const m_safe = m_new == -INFINITY ? 0.f : m_new;
    float const a = ex2_approx(st.m[r] - m_safe);
    float const wk = ex2_approx(lse_r - m_safe);
    lsum[r] = lsum[r] * a + wk;
    st.m[r] = m_new;
    float const ws = wk * scale(r);  // int8 (v12m): the row's scale folds into the weight
    CUTLASS_PRAGMA_UNROLL
    for (int c = 0; c < kCols; c += 2) {
      uint32_t const u = raw(r, c);
      float2 const v = int8 ? int8x2_to_float2(u) : __bfloat1622float2(*reinterpret_cast<__nv_bfloat162 const*>(&u));
      o_rc(r, c) = o_rc(r, c) * a + ws * v.x;
      o_rc(r, c + 1) = o_rc(r, c + 1) * a + ws * v.y;
    }
  }
}

template <class TO>
CUTLASS_DEVICE void apply_part(TileOuterParams const& prm, PartRegs const& pr, bool const (&on)[2], RowState& st,
                               float (&lsum)[2], TO& o_rc) {
  apply_part_from(
      prm.partial_scale != nullptr, [&](int r) { return pr.lse[r]; }, [&](int r) { return pr.scale[r]; },
      [&](int r, int c) { return pr.raw[r][c / 2]; }, on, st, lsum, o_rc);
}

// v18s: the byte offset of byte `byte` of row `row16` in a warp's staged part (rows of kHeadDim parts: 256 bytes for
// bf16, 128 for int8, v18t): a row's 16-byte chunks XOR-swizzled by row % 8, so the fold's reads (8 rows per
// instruction: 4 words of a row for bf16, 8 bytes for int8) fall in different banks and the 16-byte cp.asyncs stay
// contiguous.
template <bool I8>
CUTLASS_DEVICE int fold_at(int row16, int byte) {
  constexpr int kRowBytes = kHeadDim * (I8 ? 1 : 2);
  return row16 * kRowBytes + (((byte >> 4) ^ (row16 % 8)) << 4) + (byte & 15);
}

// v18s: issue cp.asyncs of one pick's parts into a warp's staged slot: lane l copies 16-byte chunks l + 32 i (row
// (l + 32 i) / kChunks of the warp's 16, so the row half depends on i only: warp-uniform), lanes 0-3 the 16 LSEs
// in 4-row chunks and, for int8 parts (v18t), lanes 4-7 the 16 row scales. `wrow`: the warp's first row of its
// consumer's 64. The caller commits the group.
template <int GROUP, bool I8>
CUTLASS_DEVICE void stage_part(TileOuterParams const& prm, PartPick const& pick, uint32_t* words, float* lse,
                               float* scale, int wrow) {
  constexpr int kRowBytes = kHeadDim * (I8 ? 1 : 2);
  constexpr int kChunks = kRowBytes / 16;  // 16-byte chunks per row
  int const lane = threadIdx.x % 32;
  char const* po = static_cast<char const*>(prm.partial_o);
  char* bytes = reinterpret_cast<char*>(words);
  CUTLASS_PRAGMA_UNROLL
  for (int i = 0; i < 16 * kChunks / 32; ++i) {
    int const c = lane + 32 * i;
    int const row16 = c / kChunks, r = 32 * i / kChunks / 8;
    if (!pick.on[r]) continue;  // warp-uniform
    int64_t const part = (pick.row[r] * prm.top_k + pick.k[r]) * GROUP + (wrow + row16) % GROUP;
    int const byte = (c % kChunks) * 16;
    uint32_t const dst = static_cast<uint32_t>(__cvta_generic_to_shared(bytes + fold_at<I8>(row16, byte)));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" :: "r"(dst), "l"(po + part * kRowBytes + byte));
  }
  int const q4 = lane % 4;  // the 4-row chunk
  bool const hi = q4 >= 2;  // its row half (selects, not an index: the pick stays in registers)
  if (lane < (I8 ? 8 : 4) && (hi ? pick.on[1] : pick.on[0])) {
    int64_t const part = ((hi ? pick.row[1] : pick.row[0]) * prm.top_k + (hi ? pick.k[1] : pick.k[0])) * GROUP +
                         (wrow + 4 * q4) % GROUP;
    float const* src = (lane < 4 ? prm.partial_lse : prm.partial_scale) + part;
    uint32_t const dst = static_cast<uint32_t>(__cvta_generic_to_shared((lane < 4 ? lse : scale) + 4 * q4));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" :: "r"(dst), "l"(src));
  }
}

template <int GROUP>
CUTLASS_DEVICE bool any_present(uint32_t const (&present)[16 / GROUP]) {
  uint32_t all = 0;
  CUTLASS_PRAGMA_UNROLL
  for (int u = 0; u < 16 / GROUP; ++u) all |= present[u];
  return all != 0;
}

// The lowest present slot of each row half's token, and those slots taken out of `present` (one per token).
// `row`: the row ([Hkv, T] index) of the warp's first token; its tokens' rows follow it.
template <int GROUP>
CUTLASS_DEVICE PartPick pick_parts(int64_t row, uint32_t (&present)[16 / GROUP]) {
  using R = Rows<GROUP>;
  PartPick pick;
  CUTLASS_PRAGMA_UNROLL
  for (int r = 0; r < 2; ++r) {
    pick.row[r] = row + R::tok(r);
    pick.k[r] = __ffs(present[R::tok(r)]) - 1;
    pick.on[r] = present[R::tok(r)] != 0;
  }
  CUTLASS_PRAGMA_UNROLL
  for (int u = 0; u < R::kTokWarp; ++u) present[u] &= present[u] - 1;
  return pick;
}

// Fold the parts of `present` (per token of the warp) into the rows' softmax state and O, lowest slot first.
// `first` (v18, FOLDPRE): the lowest present parts, already loaded during the item's last block (pick_parts on a
// copy of `present`), so their latency hid under the tensor work.
// `staged` (v18s, FOLD_SLOTS): the lowest n_staged present parts (bf16; v18t, I8: int8), already in shared memory
// (slot s at staged + 4 s kFoldWords<I8>, its LSEs at staged_lse + 64 s, int8 row scales at staged_scale + 64 s:
// slots of a consumer's 4 warps; the caller waited for them).
template <int GROUP, bool I8 = false, class TO, class TC>
CUTLASS_DEVICE void fold_parts(TileOuterParams const& prm, int64_t row, uint32_t (&present)[16 / GROUP], int row0,
                               RowState& st, float (&lsum)[2], TO& o_rc, TC const& cO_rc,
                               PartRegs const* first = nullptr, uint32_t const* staged = nullptr,
                               float const* staged_lse = nullptr, int n_staged = 0,
                               float const* staged_scale = nullptr) {
  if (first != nullptr) {
    PartPick const pick = pick_parts<GROUP>(row, present);
    apply_part(prm, *first, pick.on, st, lsum, o_rc);
  }
  int const g = row0 % 8;  // the thread's rows in its warp's 16: g and g + 8
  for (int s = 0; s < n_staged && any_present<GROUP>(present); ++s) {
    PartPick const pick = pick_parts<GROUP>(row, present);
    char const* bytes = reinterpret_cast<char const*>(staged + s * 4 * kFoldWords<I8>);
    float const* lse = staged_lse + s * 4 * 16;
    if constexpr (I8) {
      float const* scale = staged_scale + s * 4 * 16;
      apply_part_from(
          true, [&](int r) { return lse[g + 8 * r]; }, [&](int r) { return scale[g + 8 * r]; },
          [&](int r, int c) {
            return static_cast<uint32_t>(
                *reinterpret_cast<uint16_t const*>(bytes + fold_at<true>(g + 8 * r, get<1>(cO_rc(r, c)))));
          },
          pick.on, st, lsum, o_rc);
    } else {
      apply_part_from(
          false, [&](int r) { return lse[g + 8 * r]; }, [](int) { return 1.f; },
          [&](int r, int c) {
            return *reinterpret_cast<uint32_t const*>(bytes + fold_at<false>(g + 8 * r, 2 * get<1>(cO_rc(r, c))));
          },
          pick.on, st, lsum, o_rc);
    }
  }
  while (any_present<GROUP>(present)) {  // the warp's tokens: uniform
    PartPick const pick = pick_parts<GROUP>(row, present);
    PartRegs pr;
    load_part<GROUP>(prm, pick, row0, cO_rc, pr);
    apply_part(prm, pr, pick.on, st, lsum, o_rc);
  }
}

template <int STAGES, bool OVERLAP, bool FAST, bool PINGPONG, bool QPREFETCH, bool FP8, bool FOLDPRE, int DIAG,
          bool QPAIRS, int GROUP, int FOLD_SLOTS, bool FOLD_I8, bool ONE_BODY, bool CLEAN_APART, bool QTWO>
__global__ void __launch_bounds__(kThreads, 1)
tile_outer_kernel(CUTE_GRID_CONSTANT typename Ops<FP8>::TmaKt const tma_k,
                  CUTE_GRID_CONSTANT typename Ops<FP8>::TmaVtt const tma_vt,
                  CUTE_GRID_CONSTANT TileOuterParams const prm) {
  static_assert(OVERLAP || !FOLDPRE, "the fold's first part is loaded in the overlapped loop");
  static_assert(!(FOLDPRE && FOLD_SLOTS), "the first part comes from registers or from shared memory");
  static_assert(!FOLD_SLOTS || QPREFETCH, "the staged parts' cp.async group is counted against the next Q's");
  static_assert(!ONE_BODY || OVERLAP, "the masked block's id is asked for in the overlapped loop");
  static_assert(!QTWO || (FP8 && QPAIRS && QPREFETCH), "Q's second term is made where the FP8 step quantises Q");
  using O = Ops<FP8>;
  using R = Rows<GROUP>;
  constexpr int NT = R::kTokWarp;
  using Storage = SharedStorage<STAGES, FP8, FP8 && QPREFETCH, FOLD_SLOTS, FOLD_I8, QTWO>;
  extern __shared__ char smem_raw[];
  Storage& sh = *reinterpret_cast<Storage*>(smem_raw);
  int const wg = threadIdx.x / 128;
  int const tid = threadIdx.x % 128;

  if (threadIdx.x == 0) {
    CUTLASS_PRAGMA_UNROLL
    for (int s = 0; s < STAGES; ++s) {
      cutlass::arch::ClusterTransactionBarrier::init(&sh.full[s], 1);
      cutlass::arch::ClusterBarrier::init(&sh.empty[s], 2 * 128);
    }
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();
  int const num_work = *prm.num_work;

  Tensor sK = make_tensor(make_smem_ptr(sh.k.data()), typename O::template SmemK<STAGES>{});
  Tensor sVt = make_tensor(make_smem_ptr(sh.vt.data()), typename O::template SmemVt<STAGES>{});

  if (wg == 0) {  // producer
    cutlass::arch::warpgroup_reg_dealloc<24>();
    if (threadIdx.x / 32 != 0 || !cute::elect_one_sync()) return;
    Tensor mK = tma_k.get_tma_tensor(GShape{Int<kKeys>{}, Int<kHeadDim>{}, prm.num_kv_heads, prm.num_pages});
    Tensor mVt = tma_vt.get_tma_tensor(GShape{Int<kHeadDim>{}, Int<kKeys>{}, prm.num_kv_heads, prm.num_pages});
    int it = 0;
    for (int w = blockIdx.x; w < num_work; w += gridDim.x) {
      int64_t const tile = prm.work[w];
      int const h = static_cast<int>(tile / prm.num_tiles);
      int const cnt = prm.count[tile];
      auto [tKg, tKs] = tma_partition(tma_k, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sK),
                                      group_modes<0, 2>(mK(_, _, h, _)));
      auto [tVg, tVs] = tma_partition(tma_vt, Int<0>{}, Layout<_1>{}, group_modes<0, 2>(sVt),
                                      group_modes<0, 2>(mVt(_, _, h, _)));
      for (int j = 0; j < cnt; ++j, ++it) {
        int const stage = it % STAGES;
        int const page = prm.pages[tile * prm.max_union + j];
        cutlass::arch::ClusterBarrier::wait(&sh.empty[stage], ((it / STAGES) & 1) ^ 1);
        cutlass::arch::ClusterTransactionBarrier::arrive_and_expect_tx(&sh.full[stage], O::kStageBytes);
        copy(tma_k.with(sh.full[stage]), tKg(_, page), tKs(_, stage));
        copy(tma_vt.with(sh.full[stage]), tVg(_, page), tVs(_, stage));
      }
    }
    return;
  }

  // consumers
  cutlass::arch::warpgroup_reg_alloc<240>();
  int const cw = wg - 1;  // 0, 1: rows 64 * cw ...
  Tensor sQ = make_tensor(make_smem_ptr(sh.q[cw].data()), typename O::SmemQ{});
  typename O::MmaSt mma_s;
  typename O::MmaOt mma_o;
  auto thr_s = mma_s.get_thread_slice(tid);
  auto thr_o = mma_o.get_thread_slice(tid);
  Tensor tSrQ = thr_s.partition_fragment_A(sQ);
  Tensor sQlo = make_tensor(make_smem_ptr(QTWO ? sh.q_lo[cw].data() : sh.q[cw].data()), typename O::SmemQ{});
  Tensor tSrQlo = thr_s.partition_fragment_A(sQlo);
  auto* const q_lo = QTWO ? &sQlo : nullptr;  // where the quantisers write Q's second term (QTWO), or none
  Tensor tSrK = thr_s.partition_fragment_B(sK);
  Tensor tOrVt = thr_o.partition_fragment_B(sVt);
  Tensor cS = thr_s.partition_C(make_identity_tensor(Shape<Int<kRowsWG>, Int<kKeys>>{}));
  Tensor cO = thr_o.partition_C(make_identity_tensor(Shape<Int<kRowsWG>, Int<kHeadDim>>{}));
  Tensor cS_rc = make_tensor(cS.data(), rowcol(cS.layout()));
  Tensor cO_rc = make_tensor(cO.data(), rowcol(cO.layout()));
  int const row0 = get<0>(cS_rc(0, 0));       // this thread's rows: row0, row0 + 8 (same 16-row warp slice)
  int const tok_local = cw * R::kTokWG + (row0 / 16) * NT;  // the tile's first token this warp holds (of NT)

  // PINGPONG (FA3's warp-scheduler barriers): the two consumers take turns issuing their wgmmas (named barriers
  // 3 and 4: one syncs on its own, the other arrives on it), so one's softmax runs under the other's products.
  // Consumer 1 opens consumer 0's first turn; every issue is one turn of each, so the counts stay matched.
  auto my_turn = [&] { if constexpr (PINGPONG) cutlass::arch::NamedBarrier::sync(256, 3 + cw); };
  auto their_turn = [&] { if constexpr (PINGPONG) cutlass::arch::NamedBarrier::arrive(256, 3 + (1 - cw)); };
  if (cw == 1) their_turn();
  int it = 0;
  for (int w = blockIdx.x; w < num_work; w += gridDim.x) {
    int64_t const tile = prm.work[w];
    int const h = static_cast<int>(tile / prm.num_tiles);
    int const i = static_cast<int>(tile % prm.num_tiles);
    int const cnt = prm.count[tile];
    int const n_clean = prm.use_clean ? prm.clean[tile] : 0;
    // the warp's tokens t0 + u (u < NT): positions, selection bits of the union, rows of [Hkv, T]
    int const t0 = prm.tile_first[i] + tok_local;  // v19: tiles are runs of one request's tokens
    int const t_end = prm.tile_first[i + 1];
    int64_t const row = static_cast<int64_t>(h) * prm.num_tokens + t0;  // token t0 + u's row: row + u
    int tpos[NT];
    uint64_t tm[NT];
    bool tok_ok[NT];
    uint32_t present[NT];  // fused merge: the rows' KV-outer slots, asked for under the first S (find_slots)
    CUTLASS_PRAGMA_UNROLL
    for (int u = 0; u < NT; ++u) {
      tok_ok[u] = t0 + u < t_end;
      tpos[u] = tok_ok[u] ? prm.positions[t0 + u] : -1;
      tm[u] = static_cast<uint64_t>(prm.tokmask[tile * R::kTileT + tok_local + u]);
      present[u] = 0;
    }
    int const pos[2] = {tpos[R::tok(0)], tpos[R::tok(1)]};  // per row half
    // FOLD_SLOTS (v18s): bf16 parts (v18t, FOLD_I8: int8 parts) are staged by cp.async right away, a whole item
    // ahead of the fold; parts of the other dtype take the register path
    bool const stage_fold = FOLD_SLOTS > 0 && prm.fuse_merge && (prm.partial_scale != nullptr) == FOLD_I8;
    int const wrow = (row0 / 16) * 16;  // the warp's first row of the consumer's 64
    // the warp's slot 0 in sh.fold ([consumer][slot][warp]); slot s at + s * 4 * kFoldWords<FOLD_I8>
    int const slot0 = cw * FOLD_SLOTS * 4 + row0 / 16;
    uint32_t* const staged = FOLD_SLOTS ? sh.fold.data() + slot0 * kFoldWords<FOLD_I8> : nullptr;
    float* const staged_lse = FOLD_SLOTS ? sh.fold_lse.data() + slot0 * 16 : nullptr;
    float* const staged_scale = FOLD_SLOTS && FOLD_I8 ? sh.fold_scale.data() + slot0 * 16 : nullptr;
    auto find_slots = [&] {
      CUTLASS_PRAGMA_UNROLL
      for (int u = 0; u < NT; ++u) {
        if (prm.fuse_merge) present[u] = fold_slots(prm, row + u, tok_ok[u]);
      }
      if constexpr (FOLD_SLOTS > 0) {
        if (stage_fold && any_present<GROUP>(present)) {
          __syncwarp();  // every lane's reads of the previous item's staged parts are done
          uint32_t peek[NT];
          CUTLASS_PRAGMA_UNROLL
          for (int u = 0; u < NT; ++u) peek[u] = present[u];
          CUTLASS_PRAGMA_UNROLL
          for (int s = 0; s < FOLD_SLOTS; ++s) {
            uint32_t* const words = staged + s * 4 * kFoldWords<FOLD_I8>;
            float* const scale = FOLD_I8 ? staged_scale + s * 4 * 16 : nullptr;
            stage_part<GROUP, FOLD_I8>(prm, pick_parts<GROUP>(row, peek), words, staged_lse + s * 4 * 16, scale,
                                       wrow);
          }
          asm volatile("cp.async.commit_group;\n" ::: "memory");
        }
      }
    };
    // FOLDPRE (v18): the lowest present parts are loaded during the item's last block (their latency under the
    // tensor work and the last softmax), the rest in the epilogue as before
    PartRegs first_part;
    auto prefetch_fold = [&] {
      if constexpr (FOLDPRE) {
        if (any_present<GROUP>(present)) {
          uint32_t peek[NT];
          CUTLASS_PRAGMA_UNROLL
          for (int u = 0; u < NT; ++u) peek[u] = present[u];
          load_part<GROUP>(prm, pick_parts<GROUP>(row, peek), row0, cO_rc, first_part);
        }
      }
    };

    // Q rows of this warpgroup (4 tokens x 16 heads) into shared memory, 16 bytes per access; with QPREFETCH
    // (after the first tile) they were requested by cp.async during the previous tile, once its last S was done.
    if (!QPREFETCH || w == static_cast<int>(blockIdx.x)) {
      NamedBarrierSync(cw);  // the previous tile's wgmmas of this warpgroup are done with sQ (they were waited)
      if constexpr (FP8) {
        load_q_fp8<GROUP>(sQ, sh.q_scale[cw], prm, tile, cw, tid, nullptr, q_lo);
      } else {
        load_q<GROUP>(sQ, prm, tile, cw, tid, false);
      }
    } else {
      asm volatile("cp.async.wait_group 0;\n" ::: "memory");
      // FP8: each thread quantises the bf16 chunks its own cp.asyncs staged (sQ is free: the previous tile's last
      // P V, which every warp issued after its last S, has completed)
      // DIAG 1 (timing diagnostic, WRONG output): the staged rows are not quantised, sQ keeps the previous Q
      if constexpr (FP8 && QPAIRS) {
        quantize_q_pairs(sQ, sh.q_scale[cw], sh.q_stage[cw].data(), tid, q_lo);
      } else if constexpr (FP8 && DIAG != 1) {
        load_q_fp8<GROUP>(sQ, sh.q_scale[cw], prm, tile, cw, tid, sh.q_stage[cw].data());
      }
    }
    cutlass::arch::fence_view_async_shared();  // generic-proxy writes, read next by wgmma (async proxy)
    NamedBarrierSync(cw);
    float scale_log2[2] = {prm.scale_log2, prm.scale_log2};  // FP8: times each row's Q scale
    if constexpr (FP8) {
      scale_log2[0] *= sh.q_scale[cw][row0];
      scale_log2[1] *= sh.q_scale[cw][row0 + 8];
    }

    Tensor tOrO = partition_fragment_C(mma_o, Shape<Int<kRowsWG>, Int<kHeadDim>>{});
    clear(tOrO);
    RowState st{{-INFINITY, -INFINITY}, {0.f, 0.f}};
    Tensor tSrS = partition_fragment_C(mma_s, Shape<Int<kRowsWG>, Int<kKeys>>{});
    // P as the P V product's A operand: bf16, the accumulator's own order (acc_as_a); FP8, 16 bytes per 32 keys in
    // the order to_fp8 packs them (4 registers per k-step, as the m64nNk32 atom takes them)
    auto tOrP = [&] {
      if constexpr (FP8) {
        return make_tensor<ElementF8>(Layout<Shape<Shape<_4, _2, _2>, _1, _4>, Stride<Stride<_1, _4, _8>, _0, _16>>{});
      } else {
        return make_tensor<Element>(acc_as_a(make_layout(tSrS.shape())));
      }
    }();
    auto to_p = [&] {
      if constexpr (FP8) {
        to_fp8(tSrS, tOrP);
      } else {
        Tensor rP = make_tensor(tOrP.data(), tSrS.layout());
        to_bf16(tSrS, rP);
      }
    };

    float alpha[2];
    // S of block j (masked unless clean), softmax in place; O is rescaled by the caller
    auto scores = [&](int j, int stage) {
      if constexpr (QTWO) {
        wgmma_two(mma_s, tSrQ, tSrQlo, tSrK(_, _, _, stage), tSrS);
      } else {
        wgmma(mma_s, tSrQ, tSrK(_, _, _, stage), tSrS, true);
      }
      // DIAG 4 (timing diagnostic, WRONG output, v18y): S's product twice (a second group; the waits for S that
      // follow wait for both), the tensor work a two-term Q would add at the least
      if constexpr (DIAG == 4) wgmma(mma_s, tSrQ, tSrK(_, _, _, stage), tSrS, false);
    };
    // ONE_BODY (v18u): a masked block's id, asked for right after its S is issued (the load runs under the wgmma)
    int blk_ahead = 0;
    auto block_ahead = [&](int j) {
      if constexpr (ONE_BODY) blk_ahead = j < n_clean ? 0 : prm.union_blocks[tile * prm.max_union + j];
    };
    auto softmax = [&](int j) {
      if constexpr (ONE_BODY) {
        bool const masked = j >= n_clean;
        if constexpr (CLEAN_APART) {  // v18v (variant 26, bf16): clean blocks keep their own body
          if (!masked) {
            softmax_step<false, FAST, FP8 ? 8 : 0>(tSrS, cS, st, alpha, scale_log2, {true, true}, 0, pos);
            return;
          }
        }
        bool const chosen[2] = {!masked || ((tm[R::tok(0)] >> j) & 1) != 0,
                                !masked || ((tm[R::tok(1)] >> j) & 1) != 0};
        int const kpos0 = blk_ahead * kKeys;
        bool const causal = masked && kpos0 + kKeys - 1 > (pos[0] < pos[1] ? pos[0] : pos[1]);
        softmax_step_rows<FAST, FP8 ? 8 : 0>(tSrS, cS, st, alpha, scale_log2, chosen, causal, kpos0, pos);
        return;
      }
      if (j < n_clean || DIAG == 3) {  // DIAG 3 (timing diagnostic, WRONG output): no block masked
        softmax_step<false, FAST, FP8 ? 8 : 0>(tSrS, cS, st, alpha, scale_log2, {true, true}, 0, pos);
      } else {
        int const blk = prm.union_blocks[tile * prm.max_union + j];
        bool const chosen[2] = {((tm[R::tok(0)] >> j) & 1) != 0, ((tm[R::tok(1)] >> j) & 1) != 0};
        softmax_step<true, FAST, FP8 ? 8 : 0>(tSrS, cS, st, alpha, scale_log2, chosen, blk * kKeys, pos);
      }
    };
    auto prefetch_next_q = [&] {  // sQ is free once every warp's last S of this tile has completed
      if constexpr (QPREFETCH) {
        if (w + static_cast<int>(gridDim.x) < num_work) {
          NamedBarrierSync(cw);
          if constexpr (FP8 && QPAIRS) {
            stage_q_pairs<GROUP>(sh.q_stage[cw].data(), prm, prm.work[w + gridDim.x], cw, tid);
          } else if constexpr (FP8) {  // bf16 rows into the stage, row-major (quantised at the next tile's start)
            Tensor sStage = make_tensor(make_smem_ptr(sh.q_stage[cw].data()),
                                        make_layout(Shape<Int<kRowsWG>, Int<kHeadDim>>{}, LayoutRight{}));
            load_q<GROUP>(sStage, prm, prm.work[w + gridDim.x], cw, tid, true);
          } else {
            load_q<GROUP>(sQ, prm, prm.work[w + gridDim.x], cw, tid, true);
          }
        }
      }
    };
    auto wait_full = [&](int k) {
      cutlass::arch::ClusterTransactionBarrier::wait(&sh.full[k % STAGES], (k / STAGES) & 1);
    };
    if constexpr (!OVERLAP) {
      for (int j = 0; j < cnt; ++j, ++it) {
        int const stage = it % STAGES;
        wait_full(it);
        scores(j, stage);
        if (j == 0) find_slots();
        warpgroup_wait<0>();
        warpgroup_fence_operand(tSrS);
        softmax(j);
        rescale(tOrO, alpha);
        to_p();
        wgmma_rs(mma_o, tOrP, tOrVt(_, _, _, stage), tOrO);
        warpgroup_wait<0>();
        warpgroup_fence_operand(tOrO);
        cutlass::arch::ClusterBarrier::arrive(&sh.empty[stage]);
      }
    } else {
      // FA3's intra-warpgroup overlap: S of block j runs on the tensor cores while ... P V of block j - 1 too,
      // and the softmax of block j runs while P V of block j - 1 finishes.
      wait_full(it);
      my_turn();
      scores(0, it % STAGES);
      their_turn();
      block_ahead(0);
      find_slots();
      if (cnt == 1) prefetch_fold();
      warpgroup_wait<0>();
      warpgroup_fence_operand(tSrS);
      if (cnt == 1) prefetch_next_q();
      softmax(0);
      to_p();
      for (int j = 1; j < cnt; ++j, ++it) {
        int const prev = it % STAGES;
        int const stage = (it + 1) % STAGES;
        wait_full(it + 1);
        my_turn();
        scores(j, stage);
        wgmma_rs(mma_o, tOrP, tOrVt(_, _, _, prev), tOrO);
        their_turn();
        block_ahead(j);
        if (j == cnt - 1) prefetch_fold();
        warpgroup_wait<1>();  // S of block j is done (groups complete in order); P V of j - 1 may still run
        warpgroup_fence_operand(tSrS);
        if (j == cnt - 1) prefetch_next_q();
        softmax(j);
        warpgroup_wait<0>();
        warpgroup_fence_operand(tOrO);
        cutlass::arch::ClusterBarrier::arrive(&sh.empty[prev]);
        rescale(tOrO, alpha);
        to_p();  // only now: the P V of block j - 1 read P from registers until it finished
      }
      my_turn();
      wgmma_rs(mma_o, tOrP, tOrVt(_, _, _, it % STAGES), tOrO);
      their_turn();
      warpgroup_wait<0>();
      warpgroup_fence_operand(tOrO);
      cutlass::arch::ClusterBarrier::arrive(&sh.empty[it % STAGES]);
      ++it;
    }

    // Epilogue: normalise; a direct row -> out, else -> its carrier slot of the partials (+ log2-sum-exp). With
    // fuse_merge (v9's option, here with register headroom): the row's KV-outer parts (written before this launch;
    // `rest` lists their slots) are folded into the softmax state first, and every row of the tile goes to out.
    if constexpr (FP8) {  // O and l are 2^8 x the usual ones (softmax_step's P_OFF) and O lacks V's scale
      float const vs[2] = {prm.v_scale, prm.v_scale};
      rescale(tOrO, vs);
      CUTLASS_PRAGMA_UNROLL
      for (int r = 0; r < 2; ++r) st.m[r] -= 8.f;  // -inf stays -inf
    }
    Tensor o_rc = make_tensor(tOrO.data(), rowcol(tOrO.layout()));
    float lsum[2] = {quad_sum(st.l[0]), quad_sum(st.l[1])};
    // A direct row (no KV-outer entry: every row at f = 1) has nothing to fold (v11: the fused merge then costs
    // nothing where it does not pay); the warp's tokens are the same in every lane, so the test is warp-uniform.
    if (DIAG != 2 && any_present<GROUP>(present)) {  // DIAG 2 (timing diagnostic, WRONG output): no fold
      if constexpr (FOLD_SLOTS > 0) {
        if (stage_fold) {  // the staged group, or it and the next Q's (committed after it)
          if (w + static_cast<int>(gridDim.x) < num_work) {
            asm volatile("cp.async.wait_group 1;\n" ::: "memory");
          } else {
            asm volatile("cp.async.wait_group 0;\n" ::: "memory");
          }
          __syncwarp();  // the other lanes' copies are visible
        }
      }
      fold_parts<GROUP, FOLD_I8>(prm, row, present, row0, st, lsum, o_rc, cO_rc, FOLDPRE ? &first_part : nullptr,
                                 staged, staged_lse, stage_fold ? FOLD_SLOTS : 0, staged_scale);
    }
    bool direct[NT];
    int carrier[NT];
    CUTLASS_PRAGMA_UNROLL
    for (int u = 0; u < NT; ++u) {
      direct[u] = tok_ok[u] && (prm.fuse_merge || prm.direct[row + u] != 0);
      carrier[u] = tok_ok[u] && !prm.fuse_merge ? prm.carrier[row + u] : -1;
    }
    CUTLASS_PRAGMA_UNROLL
    for (int r = 0; r < 2; ++r) {
      int const u = R::tok(r);
      float const l = lsum[r];
      float const inv = l > 0.f ? 1.f / l : 1.f;
      int const g = (row0 + 8 * r) % GROUP;
      Element* dst = nullptr;
      if (direct[u]) {
        dst = static_cast<Element*>(prm.out) + (t0 + u) * prm.stride_ot + (h * GROUP + g) * prm.stride_oh;
      } else if (tok_ok[u] && carrier[u] >= 0) {  // the partials' carrier slot, or (v12m) the row's bf16 side buffer
        bool const side = prm.carrier_o != nullptr;
        int64_t const part = side ? (row + u) * GROUP + g : ((row + u) * prm.top_k + carrier[u]) * GROUP + g;
        dst = static_cast<Element*>(side ? prm.carrier_o : prm.partial_o) + part * kHeadDim;
        float* lse = side ? prm.carrier_lse : prm.partial_lse;
        if ((threadIdx.x & 3) == 0) lse[part] = l > 0.f ? st.m[r] + log2f(l) : -INFINITY;
      }
      if (dst != nullptr) {
        CUTLASS_PRAGMA_UNROLL
        for (int c = 0; c < size<1>(o_rc); c += 2) {  // columns c, c + 1 are adjacent: one 4-byte store
          int const d = get<1>(cO_rc(r, c));
          __nv_bfloat162 v = __floats2bfloat162_rn(o_rc(r, c) * inv, o_rc(r, c + 1) * inv);
          *reinterpret_cast<__nv_bfloat162*>(dst + d) = v;
        }
      }
    }
  }
}

}  // namespace msa_sm90

using namespace msa_sm90;

template <int STAGES, bool OVERLAP, bool FAST = false, bool PINGPONG = false, bool QPREFETCH = false, bool FP8 = false,
          bool FOLDPRE = false, int DIAG = 0, bool QPAIRS = false, int GROUP = kGroup, int FOLD_SLOTS = 0,
          bool FOLD_I8 = false, bool ONE_BODY = false, bool CLEAN_APART = false, bool QTWO = false>
cudaError_t launch_variant(typename Ops<FP8>::TmaKt const& tma_k, typename Ops<FP8>::TmaVtt const& tma_vt,
                           TileOuterParams const& prm, int grid, cudaStream_t stream) {
  using Storage = SharedStorage<STAGES, FP8, FP8 && QPREFETCH, FOLD_SLOTS, FOLD_I8, QTWO>;
  static_assert(sizeof(Storage) <= 227 * 1024, "over sm_90's 227 KiB of shared memory per block");
  int const smem = static_cast<int>(sizeof(Storage));
  auto kernel = tile_outer_kernel<STAGES, OVERLAP, FAST, PINGPONG, QPREFETCH, FP8, FOLDPRE, DIAG, QPAIRS, GROUP,
                                  FOLD_SLOTS, FOLD_I8, ONE_BODY, CLEAN_APART, QTWO>;
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  if (err != cudaSuccess || grid <= 0) return err;
  kernel<<<grid, kThreads, smem, stream>>>(tma_k, tma_vt, prm);
  return cudaGetLastError();
}

int tile_outer_sm90_smem_bytes(int variant) {
  if (variant == 6) return static_cast<int>(sizeof(SharedStorage<4, true>));
  if (variant == 19 || variant == 24 || variant == 95) {  // the larger of its two builds (bf16 parts, int8 parts)
    return static_cast<int>(std::max(sizeof(SharedStorage<3, true, true, 2>), sizeof(SharedStorage<3, true, true, 4, true>)));
  }
  if (variant == 30) {  // v18z: with Q's second term; int8 parts staged three deep (four do not fit beside it)
    return static_cast<int>(std::max(sizeof(SharedStorage<3, true, true, 2, false, true>),
                                     sizeof(SharedStorage<3, true, true, 3, true, true>)));
  }
  if (variant == 8 || variant == 10 || variant == 12 || variant == 16 || variant >= 90) {
    return static_cast<int>(sizeof(SharedStorage<4, true, true>));
  }
  return static_cast<int>(variant >= 2 ? sizeof(SharedStorage<3>) : sizeof(SharedStorage<2>));
}

// v18: the FP8 variants on widen.py's transposed e4m3 pages: K rows [key][d] at column 0, V^T rows [d][key position]
// at column 128 of the same [pages, Hkv, 128, 256] bytes, so both are K-major views with the row stride of the page.
cudaError_t tile_outer_sm90_launch_fp8(TileOuterParams const& prm, void const* kv_raw, int64_t stride_kvp,
                                       int64_t stride_kvh, int64_t stride_kvt, int grid, int variant,
                                       cudaStream_t stream) {
  using O = Ops<true>;
  ElementF8 const* kv = static_cast<ElementF8 const*>(kv_raw);
  GShape const shape{Int<kKeys>{}, Int<kHeadDim>{}, int32_t(prm.num_kv_heads), int32_t(prm.num_pages)};
  Tensor gK = make_tensor(make_gmem_ptr(kv), shape, make_stride(stride_kvt, _1{}, stride_kvh, stride_kvp));
  Tensor gVt = make_tensor(make_gmem_ptr(kv + kHeadDim), shape, make_stride(stride_kvt, _1{}, stride_kvh, stride_kvp));
  O::TmaKt tma_k = make_tma_copy(SM90_TMA_LOAD{}, gK, take<0, 2>(O::SmemK<1>{}));
  O::TmaVtt tma_vt = make_tma_copy(SM90_TMA_LOAD{}, gVt, take<0, 2>(O::SmemVt<1>{}));
  // v18t: variant 19 stages two bf16 parts per row, or four int8 parts in the same shared memory (a build each)
  bool const int8_parts = prm.partial_scale != nullptr;
  if (prm.group == 8) {  // v18r: M3 at tensor parallel 8; variant 16 (12 without FOLDPRE, whose registers spill at
    // GROUP 8: a warp's two tokens keep two positions, selection masks and slot masks) and v18s's 19
    switch (variant) {
      case 16: return launch_variant<4, true, true, false, true, true, false, 0, true, 8>(tma_k, tma_vt, prm, grid, stream);
      case 19: return int8_parts ? launch_variant<3, true, true, false, true, true, false, 0, true, 8, 4, true>(tma_k, tma_vt, prm, grid, stream)
                                 : launch_variant<3, true, true, false, true, true, false, 0, true, 8, 2>(tma_k, tma_vt, prm, grid, stream);
      case 24: return int8_parts ? launch_variant<3, true, true, false, true, true, false, 0, true, 8, 4, true, true>(tma_k, tma_vt, prm, grid, stream)
                                 : launch_variant<3, true, true, false, true, true, false, 0, true, 8, 2, false, true>(tma_k, tma_vt, prm, grid, stream);
      case 30: return int8_parts ? launch_variant<3, true, true, false, true, true, false, 0, true, 8, 3, true, true, false, true>(tma_k, tma_vt, prm, grid, stream)
                                 : launch_variant<3, true, true, false, true, true, false, 0, true, 8, 2, false, true, false, true>(tma_k, tma_vt, prm, grid, stream);
      default: return cudaErrorInvalidValue;
    }
  }
  if (prm.group != kGroup) return cudaErrorInvalidValue;
  switch (variant) {
    case 6: return launch_variant<4, true, true, false, false, true>(tma_k, tma_vt, prm, grid, stream);
    case 8: return launch_variant<4, true, true, false, true, true>(tma_k, tma_vt, prm, grid, stream);
    case 10: return launch_variant<4, true, true, false, true, true, true>(tma_k, tma_vt, prm, grid, stream);
    case 12: return launch_variant<4, true, true, false, true, true, true, 0, true>(tma_k, tma_vt, prm, grid, stream);
    case 19: return int8_parts ? launch_variant<3, true, true, false, true, true, false, 0, true, kGroup, 4, true>(tma_k, tma_vt, prm, grid, stream)
                               : launch_variant<3, true, true, false, true, true, false, 0, true, kGroup, 2>(tma_k, tma_vt, prm, grid, stream);
    case 24: return int8_parts ? launch_variant<3, true, true, false, true, true, false, 0, true, kGroup, 4, true, true>(tma_k, tma_vt, prm, grid, stream)
                               : launch_variant<3, true, true, false, true, true, false, 0, true, kGroup, 2, false, true>(tma_k, tma_vt, prm, grid, stream);
    case 30: return int8_parts ? launch_variant<3, true, true, false, true, true, false, 0, true, kGroup, 3, true, true, false, true>(tma_k, tma_vt, prm, grid, stream)
                               : launch_variant<3, true, true, false, true, true, false, 0, true, kGroup, 2, false, true, false, true>(tma_k, tma_vt, prm, grid, stream);
    case 95: return int8_parts ? cudaErrorInvalidValue  // a diagnostic of the bf16-parts build only
                               : launch_variant<3, true, true, false, true, true, false, 4, true, kGroup, 2, false, true>(tma_k, tma_vt, prm, grid, stream);
    case 90: return launch_variant<4, true, true, false, true, true, true, 1>(tma_k, tma_vt, prm, grid, stream);
    case 91: return launch_variant<4, true, true, false, true, true, true, 2, true>(tma_k, tma_vt, prm, grid, stream);
    case 92: return launch_variant<4, true, true, false, true, true, true, 3, true>(tma_k, tma_vt, prm, grid, stream);
    default: return cudaErrorInvalidValue;
  }
}

// variant 0: 2 stages, S / softmax / P V in sequence per warpgroup; 1: 2 stages with the intra-warpgroup overlap;
// 2: 3 stages with the overlap; 3: 2 + the FFMA / ex2.approx softmax; 4: 3 + ping-pong between the consumers;
// 5: 3 + the next tile's Q fetched during the current tile (pays off with a persistent grid); 26 (v18v): 5 with FP8
// variant 24's one softmax body for the masked blocks (CLEAN_APART: clean blocks keep their own).
cudaError_t tile_outer_sm90_launch(TileOuterParams const& prm, void const* kv_raw, int64_t stride_kvp,
                                   int64_t stride_kvh, int64_t stride_kvt, int grid, int variant, cudaStream_t stream) {
  if (variant == 6 || variant == 8 || variant == 10 || variant == 12 || variant == 16 || variant == 19 || variant == 24 ||
      variant == 30 || variant >= 90) {
    return tile_outer_sm90_launch_fp8(prm, kv_raw, stride_kvp, stride_kvh, stride_kvt, grid, variant, stream);
  }
  Element const* kv = static_cast<Element const*>(kv_raw);
  GShape const shape{Int<kKeys>{}, Int<kHeadDim>{}, int32_t(prm.num_kv_heads), int32_t(prm.num_pages)};
  Tensor gK = make_tensor(make_gmem_ptr(kv), shape, make_stride(stride_kvt, _1{}, stride_kvh, stride_kvp));
  Tensor gVt = make_tensor(make_gmem_ptr(kv + kHeadDim), shape, make_stride(_1{}, stride_kvt, stride_kvh, stride_kvp));
  TmaK tma_k = make_tma_copy(SM90_TMA_LOAD{}, gK, take<0, 2>(SmemLayoutK<1>{}));
  TmaVt tma_vt = make_tma_copy(SM90_TMA_LOAD{}, gVt, take<0, 2>(SmemLayoutVt<1>{}));
  if (prm.group == 8) {  // v18r: M3 at tensor parallel 8; the default variant (v18v: 26) and its base 5 only
    switch (variant) {
      case 5: return launch_variant<3, true, true, false, true, false, false, 0, false, 8>(tma_k, tma_vt, prm, grid, stream);
      case 26: return launch_variant<3, true, true, false, true, false, false, 0, false, 8, 0, false, true, true>(tma_k, tma_vt, prm, grid, stream);
      default: return cudaErrorInvalidValue;
    }
  }
  if (prm.group != kGroup) return cudaErrorInvalidValue;
  switch (variant) {
    case 0: return launch_variant<2, false>(tma_k, tma_vt, prm, grid, stream);
    case 1: return launch_variant<2, true>(tma_k, tma_vt, prm, grid, stream);
    case 2: return launch_variant<3, true>(tma_k, tma_vt, prm, grid, stream);
    case 3: return launch_variant<3, true, true>(tma_k, tma_vt, prm, grid, stream);
    case 4: return launch_variant<3, true, true, true>(tma_k, tma_vt, prm, grid, stream);
    case 5: return launch_variant<3, true, true, false, true>(tma_k, tma_vt, prm, grid, stream);
    case 26: return launch_variant<3, true, true, false, true, false, false, 0, false, kGroup, 0, false, true, true>(tma_k, tma_vt, prm, grid, stream);
    default: return cudaErrorInvalidValue;
  }
}

// C entry points for ctypes (kernels/msa/cuda/__init__.py): no torch headers, so one nvcc call builds the library
// and the same build serves any torch version. Returns a cudaError_t.
extern "C" int msa_tile_outer_sm90(TileOuterParams const* prm, void const* kv, int64_t stride_kvp, int64_t stride_kvh,
                                   int64_t stride_kvt, int grid, int variant, void* stream) {
  return static_cast<int>(tile_outer_sm90_launch(*prm, kv, stride_kvp, stride_kvh, stride_kvt, grid, variant,
                                                 static_cast<cudaStream_t>(stream)));
}

extern "C" char const* msa_tile_outer_sm90_error(int err) { return cudaGetErrorString(static_cast<cudaError_t>(err)); }

extern "C" int msa_tile_outer_sm90_smem_bytes(int variant) { return tile_outer_sm90_smem_bytes(variant); }
