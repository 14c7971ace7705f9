"""Honest CUDA C++ candidate for matmul_bias_gelu.py: the GEMM stays with cuBLAS (at::mm, fp32 as the
reference), then ONE fused epilogue kernel adds the bias and applies the tanh GELU in place, replacing the
reference's eight elementwise passes over the output."""
import math

import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

CUDA_SOURCE = r"""
#include <torch/extension.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>

__global__ void bias_gelu_kernel(float* __restrict__ y, const float* __restrict__ bias, int64_t n, int cols) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float v = y[i] + bias[i % cols];
        const float inner = 0.7978845608028654f * (v + 0.044715f * v * v * v);
        y[i] = 0.5f * v * (1.f + tanhf(inner));
    }
}

torch::Tensor linear_bias_gelu(torch::Tensor x, torch::Tensor w, torch::Tensor b) {
    TORCH_CHECK(x.is_cuda() && x.scalar_type() == torch::kFloat32, "float32 CUDA tensor");
    auto y = at::mm(x, w.t());  // cuBLAS, on the current stream
    const int64_t n = y.numel();
    if (n == 0) return y;
    const int threads = 256;
    const int blocks = static_cast<int>(std::min<int64_t>((n + threads - 1) / threads, 65535 * 8));
    bias_gelu_kernel<<<blocks, threads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        y.data_ptr<float>(), b.contiguous().data_ptr<float>(), n, static_cast<int>(y.size(1)));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return y;
}
"""

_ext = load_inline(name="m3lab_matmul_bias_gelu_cuda",
                   cpp_sources="torch::Tensor linear_bias_gelu(torch::Tensor x, torch::Tensor w, torch::Tensor b);",
                   cuda_sources=CUDA_SOURCE, functions=["linear_bias_gelu"], extra_cuda_cflags=["-O3"])


class ModelNew(nn.Module):
    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / math.sqrt(in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ext.linear_bias_gelu(x, self.weight, self.bias)
