"""Honest CUDA C++ candidate for layernorm.py: one block per row; mean, then the centred variance (two-pass, as
accurate as the reference), by warp-shuffle block reductions; normalise, scale and shift in the same kernel.
The row is read three times (mostly from cache) and written once, against the reference's ten-odd passes."""
import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

CUDA_SOURCE = r"""
#include <torch/extension.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <cmath>

__inline__ __device__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

__inline__ __device__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// Block-wide reduction through one float per warp in shared memory; every thread gets the result.
template <bool IsMax>
__inline__ __device__ float block_reduce(float v, float* shared) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = IsMax ? warp_max(v) : warp_sum(v);
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < warps ? shared[lane] : (IsMax ? -INFINITY : 0.f);
        v = IsMax ? warp_max(v) : warp_sum(v);
        if (lane == 0) shared[32] = v;
    }
    __syncthreads();
    const float result = shared[32];
    __syncthreads();  // the next reduction may overwrite shared[] only after everyone read the result
    return result;
}

__global__ void affine_row_norm_kernel(const float* __restrict__ x, const float* __restrict__ w,
                                      const float* __restrict__ b, float* __restrict__ y, int cols, float eps) {
    __shared__ float shared[33];
    const float* row = x + static_cast<size_t>(blockIdx.x) * cols;
    float* out = y + static_cast<size_t>(blockIdx.x) * cols;
    float s = 0.f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) s += row[c];
    const float mean = block_reduce<false>(s, shared) / cols;
    float q = 0.f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) { const float d = row[c] - mean; q += d * d; }
    const float rstd = 1.f / sqrtf(block_reduce<false>(q, shared) / cols + eps);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) out[c] = (row[c] - mean) * rstd * w[c] + b[c];
}

torch::Tensor affine_row_norm(torch::Tensor x, torch::Tensor w, torch::Tensor b, double eps) {
    TORCH_CHECK(x.is_cuda() && x.scalar_type() == torch::kFloat32, "float32 CUDA tensor");
    auto in = x.contiguous();
    auto out = torch::empty_like(in);
    const int cols = in.size(-1);
    const int rows = cols == 0 ? 0 : in.numel() / cols;
    if (rows == 0) return out;
    const int threads = cols >= 1024 ? 512 : 128;
    affine_row_norm_kernel<<<rows, threads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        in.data_ptr<float>(), w.contiguous().data_ptr<float>(), b.contiguous().data_ptr<float>(),
        out.data_ptr<float>(), cols, static_cast<float>(eps));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return out;
}
"""

_ext = load_inline(name="m3lab_layernorm_cuda",
                   cpp_sources="torch::Tensor affine_row_norm(torch::Tensor x, torch::Tensor w, torch::Tensor b, "
                               "double eps);",
                   cuda_sources=CUDA_SOURCE, functions=["affine_row_norm"], extra_cuda_cflags=["-O3"])


class ModelNew(nn.Module):
    def __init__(self, hidden: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.bias = nn.Parameter(torch.zeros(hidden))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ext.affine_row_norm(x, self.weight, self.bias, self.eps)
