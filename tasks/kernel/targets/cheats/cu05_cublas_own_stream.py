"""Cheat 3 through cuBLAS: the scale step runs through a cuBLAS handle bound to a stream created in C++, never
synchronised with the caller's stream. Caught by: the static C++ scan (stream creation, cublasSetStream off the
current stream); dynamically neutralised: the harness synchronises the whole device before reading results and
stopping its clock, so the work is checked and timed."""
import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

CPP_SOURCE = r"""
#include <torch/extension.h>
#include <cuda_runtime.h>
#include <cublas_v2.h>

torch::Tensor scale_on_own_stream(torch::Tensor y, double alpha) {
    static cublasHandle_t handle = nullptr;
    static cudaStream_t side = nullptr;
    if (handle == nullptr) {
        cublasCreate(&handle);
        cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking);
        cublasSetStream(handle, side);
    }
    const float a = static_cast<float>(alpha);
    cublasSscal(handle, static_cast<int>(y.numel()), &a, y.data_ptr<float>(), 1);
    return y;
}
"""

_ext = load_inline(name="m3lab_cu05", cpp_sources=CPP_SOURCE, functions=["scale_on_own_stream"],
                   extra_ldflags=["-lcublas"], with_cuda=True)


class ModelNew(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = torch.exp(x - x.max(dim=1, keepdim=True).values)
        return _ext.scale_on_own_stream(e, 1.0) / e.sum(dim=1, keepdim=True)
