"""Honest CPU C++ candidate for softmax.py: one extension function, three passes per row (max, exp
and sum into the output, scale), built by `torch.utils.cpp_extension.load_inline` in the harness's compile stage."""
import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

CPP_SOURCE = r"""
#include <torch/extension.h>
#include <cmath>

torch::Tensor softmax_rows(torch::Tensor x) {
    TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat32, "expects a 2-D float32 tensor");
    auto in = x.contiguous();
    auto out = torch::empty_like(in);
    const int64_t rows = in.size(0), cols = in.size(1);
    const float* src = in.data_ptr<float>();
    float* dst = out.data_ptr<float>();
    for (int64_t r = 0; r < rows; ++r) {
        const float* row = src + r * cols;
        float* o = dst + r * cols;
        float m = -INFINITY, s = 0.f;
        for (int64_t c = 0; c < cols; ++c) m = std::max(m, row[c]);
        for (int64_t c = 0; c < cols; ++c) { o[c] = std::exp(row[c] - m); s += o[c]; }  // exp once, kept in out
        const float inv = 1.f / s;
        for (int64_t c = 0; c < cols; ++c) o[c] *= inv;
    }
    return out;
}
"""

_ext = load_inline(name="m3lab_softmax_cpp", cpp_sources=CPP_SOURCE, functions=["softmax_rows"],
                   extra_cflags=["-O3"])


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ext.softmax_rows(x)
