"""Shared C++ of the dynamic C++ cheats (cx01, cx04, cx06): one extension with one function per cheat, so the
tests pay for one build. Each function is softmax over rows of a float32 matrix, gamed one way."""
from torch.utils.cpp_extension import load_inline

CPP_SOURCE = r"""
#include <torch/extension.h>
#include <cmath>
#include <cstring>

// Cheat 2 in C++: the right answer, then the caller's input is zeroed (a scratch buffer "for free").
torch::Tensor softmax_zero_input(torch::Tensor x) {
    auto out = torch::softmax(x, 1);
    std::memset(x.data_ptr<float>(), 0, x.numel() * sizeof(float));
    return out;
}

// Cheat 8 in C++: every value goes through half precision inside the kernel.
torch::Tensor softmax_half_inside(torch::Tensor x) {
    auto in = x.contiguous();
    auto out = torch::empty_like(in);
    const int64_t rows = in.size(0), cols = in.size(1);
    const float* src = in.data_ptr<float>();
    float* dst = out.data_ptr<float>();
    for (int64_t r = 0; r < rows; ++r) {
        float m = -INFINITY, s = 0.f;
        for (int64_t c = 0; c < cols; ++c) m = std::max(m, src[r * cols + c]);
        for (int64_t c = 0; c < cols; ++c) {
            const float e = static_cast<float>(static_cast<at::Half>(std::exp(src[r * cols + c] - m)));
            dst[r * cols + c] = e;
            s += e;
        }
        for (int64_t c = 0; c < cols; ++c) dst[r * cols + c] = static_cast<float>(static_cast<at::Half>(dst[r * cols + c] / s));
    }
    return out;
}

// Cheat 15 in C++: the sum is unrolled by 16 with no tail mask. Exact when dim % 16 == 0 (the "friendly" timing
// shape); otherwise it reads past the row (into the next row or past the allocation).
torch::Tensor softmax_no_tail_mask(torch::Tensor x) {
    auto in = x.contiguous();
    auto out = torch::empty_like(in);
    const int64_t rows = in.size(0), cols = in.size(1);
    const int64_t padded = (cols + 15) / 16 * 16;
    const float* src = in.data_ptr<float>();
    float* dst = out.data_ptr<float>();
    for (int64_t r = 0; r < rows; ++r) {
        const float* row = src + r * cols;
        float m = -INFINITY, s = 0.f;
        for (int64_t c = 0; c < cols; ++c) m = std::max(m, row[c]);
        for (int64_t c = 0; c < padded; c += 16)
            for (int k = 0; k < 16; ++k) s += std::exp(row[c + k] - m);
        for (int64_t c = 0; c < cols; ++c) dst[r * cols + c] = std::exp(row[c] - m) / s;
    }
    return out;
}
"""

ext = load_inline(name="m3lab_cxx_cheats", cpp_sources=CPP_SOURCE,
                  functions=["softmax_zero_input", "softmax_half_inside", "softmax_no_tail_mask"],
                  extra_cflags=["-O2"])
