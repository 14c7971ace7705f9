// What the two sm_90a MSA prefill kernels (tile_outer_sm90.cu, kv_outer_sm90.cu) share: M3's shapes, the wgmma
// atoms of S = Q K^T and O = P V for 64-row consumer warpgroups, the shared-memory layouts and TMA views of one
// 128-key page of the vLLM KV cache (K and V^T), and the register-level softmax helpers (FA3's forms).
#pragma once

#include <cute/tensor.hpp>
#include <cutlass/cutlass.h>
#include <cutlass/numeric_types.h>

namespace msa_sm90_common {

using namespace cute;
using Element = cutlass::bfloat16_t;

constexpr int kHeadDim = 128;
constexpr int kKeys = 128;       // one page = one sparse block
constexpr int kGroup = 16;       // query heads per KV head (M3)
constexpr int kRowsWG = 64;      // rows per consumer warpgroup = 4 tokens (entries) x 16 heads; one warp per token
constexpr int kThreads = 384;    // producer + 2 consumer warpgroups

using TileS = Shape<Int<kRowsWG>, Int<kKeys>, Int<kHeadDim>>;   // S = Q K^T: M rows, N keys, K head dim
using TileO = Shape<Int<kRowsWG>, Int<kHeadDim>, Int<kKeys>>;   // O = P V:   M rows, N head dim, K keys
using MmaS = decltype(make_tiled_mma(GMMA::ss_op_selector<Element, Element, float, TileS>()));
using MmaO = decltype(make_tiled_mma(
    GMMA::rs_op_selector<Element, Element, float, TileO, GMMA::Major::K, GMMA::Major::MN>()));

template <int STAGES>
using SmemLayoutK = decltype(tile_to_shape(GMMA::Layout_K_SW128_Atom<Element>{},
                                           Shape<Int<kKeys>, Int<kHeadDim>, Int<STAGES>>{}));
// V^T (head dim x keys), head dim contiguous in the cache: MN-major for the P V product (as FA3's Vt)
template <int STAGES>
using SmemLayoutVt = decltype(tile_to_shape(GMMA::Layout_MN_SW128_Atom<Element>{},
                                            Shape<Int<kHeadDim>, Int<kKeys>, Int<STAGES>>{}, Step<_2, _1, _3>{}));

// GMEM views of the cache for TMA: K = (key, d, kv head, page), V^T = (d, key, kv head, page).
using GShape = Shape<Int<128>, Int<128>, int32_t, int32_t>;  // static tile modes: the TMA box is the whole page
using GStrideK = Stride<int64_t, _1, int64_t, int64_t>;
using GStrideVt = Stride<_1, int64_t, int64_t, int64_t>;
using TmaK = decltype(make_tma_copy(SM90_TMA_LOAD{},
    make_tensor(make_gmem_ptr(static_cast<Element const*>(nullptr)), GShape{}, GStrideK{}), take<0, 2>(SmemLayoutK<1>{})));
using TmaVt = decltype(make_tma_copy(SM90_TMA_LOAD{},
    make_tensor(make_gmem_ptr(static_cast<Element const*>(nullptr)), GShape{}, GStrideVt{}), take<0, 2>(SmemLayoutVt<1>{})));

constexpr uint32_t kPageBytes = 2 * kKeys * kHeadDim * sizeof(Element);  // K + V of one page and KV head

// The wgmma accumulator ((2, 2, N/8), MMA_M, MMA_N) seen as (rows = (2, MMA_M), cols = (2, N/8, MMA_N)), as FA3.
template <class L>
CUTLASS_DEVICE auto rowcol(L l) {
  return make_layout(make_layout(get<0, 1>(l), get<1>(l)), make_layout(get<0, 0>(l), get<0, 2>(l), get<2>(l)));
}

// The same accumulator re-read as the A operand (bf16 registers) of the next wgmma: ((2, 2, 2), MMA_M, (N/16, MMA_N)).
template <class L>
CUTLASS_DEVICE auto acc_as_a(L l) {
  auto d = logical_divide(get<0, 2>(l), Tile<_2>{});
  return make_layout(make_layout(get<0, 0>(l), get<0, 1>(l), get<0, 0>(d)), get<1>(l),
                     coalesce(make_layout(get<0, 1>(d), get<2>(l))));
}

CUTLASS_DEVICE float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}

CUTLASS_DEVICE float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

CUTLASS_DEVICE float ex2_approx(float x) {  // 2^x on the special-function unit (ex2.approx(-inf) = +0)
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

}  // namespace msa_sm90_common
