"""Shared CUDA C++ of the dynamic CUDA cheats (cu01-cu08 but cu05): one extension, one function per cheat, so the GPU
battery pays for one build. Each is softmax over the rows of a float32 CUDA matrix, gamed one way. Importing this
helper makes a candidate fail the static scan (it creates streams, keeps static state...): the battery runs these
with static checks on (rejected before compiling) and off (the dynamic layer alone must reject or neutralise)."""
from torch.utils.cpp_extension import load_inline

CUDA_SOURCE = r"""
#include <torch/extension.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <cuda_fp16.h>

__inline__ __device__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__inline__ __device__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// One warp per row. Mode 0 honest, 1 half precision inside, 2 no tail mask (reads up to 32 past the row),
// 3 zero the input afterwards.
__global__ void softmax_warp(float* x, float* y, int rows, int cols, int mode) {
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (row >= rows) return;
    float* r = x + static_cast<size_t>(row) * cols;
    const int end = mode == 2 ? (cols + 31) / 32 * 32 : cols;
    float m = -INFINITY;
    for (int c = lane; c < cols; c += 32) m = fmaxf(m, r[c]);
    m = warp_max(m);
    float s = 0.f;
    for (int c = lane; c < end; c += 32) s += expf(r[c] - m);
    s = warp_sum(s);
    for (int c = lane; c < cols; c += 32) {
        float v = expf(r[c] - m) / s;
        if (mode == 1) v = __half2float(__float2half(v));
        y[static_cast<size_t>(row) * cols + c] = v;
    }
    if (mode == 3) {
        __syncwarp();
        for (int c = lane; c < cols; c += 32) r[c] = 0.f;
    }
}

static void launch(torch::Tensor x, torch::Tensor y, int mode, cudaStream_t stream) {
    const int rows = x.size(0), cols = x.size(1), per_block = 8;
    softmax_warp<<<(rows + per_block - 1) / per_block, 32 * per_block, 0, stream>>>(
        x.data_ptr<float>(), y.data_ptr<float>(), rows, cols, mode);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
}

torch::Tensor softmax_mode(torch::Tensor x, int64_t mode) {
    auto y = torch::empty_like(x);
    launch(x, y, static_cast<int>(mode), c10::cuda::getCurrentCUDAStream());
    return y;
}

// Cheat 3: the kernel runs on a private stream created here and is never synchronised with the caller's.
torch::Tensor softmax_side_stream(torch::Tensor x) {
    static cudaStream_t side = nullptr;
    if (side == nullptr) cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking);
    auto y = torch::empty_like(x);
    launch(x, y, 0, side);
    return y;
}

// Cheat 6/12: skip all work when the input pointer repeats; return the previous output.
torch::Tensor softmax_pointer_repeat(torch::Tensor x) {
    static const void* last_ptr = nullptr;
    static torch::Tensor last_out;
    if (x.data_ptr() == last_ptr && last_out.defined() && last_out.sizes() == x.sizes()) return last_out;
    last_ptr = x.data_ptr();
    last_out = softmax_mode(x, 0);
    return last_out;
}

// Not a cheat but a crash: writes through a wild pointer (an illegal address); the worker's CUDA context dies.
__global__ void wild_write(float* p) { p[threadIdx.x] = 1.f; }
torch::Tensor softmax_illegal_address(torch::Tensor x) {
    wild_write<<<1, 32, 0, c10::cuda::getCurrentCUDAStream()>>>(reinterpret_cast<float*>(0x10));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return softmax_mode(x, 0);
}

// A shared-memory race (missing __syncthreads between the write and the reads of the partial sums): the sum is
// usually right, so only racecheck can tell.
__global__ void softmax_racy(const float* x, float* y, int cols) {
    __shared__ float partial[32];
    const float* r = x + static_cast<size_t>(blockIdx.x) * cols;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float m = -INFINITY;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, r[c]);
    m = warp_max(m);
    if (lane == 0) partial[warp] = m;
    __syncthreads();
    m = partial[0];
    for (int w = 1; w < blockDim.x / 32; ++w) m = fmaxf(m, partial[w]);
    float s = 0.f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) s += expf(r[c] - m);
    s = warp_sum(s);
    if (lane == 0) partial[warp] = s;  // RACE: other warps may still be reading partial[] (the max)
    __syncthreads();
    s = 0.f;
    for (int w = 0; w < blockDim.x / 32; ++w) s += partial[w];
    for (int c = threadIdx.x; c < cols; c += blockDim.x) y[static_cast<size_t>(blockIdx.x) * cols + c] = expf(r[c] - m) / s;
}
torch::Tensor softmax_race(torch::Tensor x) {
    auto y = torch::empty_like(x);
    softmax_racy<<<x.size(0), 256, 0, c10::cuda::getCurrentCUDAStream()>>>(x.data_ptr<float>(), y.data_ptr<float>(),
                                                                           static_cast<int>(x.size(1)));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return y;
}
"""

CPP_SOURCE = """
torch::Tensor softmax_mode(torch::Tensor x, int64_t mode);
torch::Tensor softmax_side_stream(torch::Tensor x);
torch::Tensor softmax_pointer_repeat(torch::Tensor x);
torch::Tensor softmax_illegal_address(torch::Tensor x);
torch::Tensor softmax_race(torch::Tensor x);
"""

ext = load_inline(name="m3lab_cuda_cheats", cpp_sources=CPP_SOURCE, cuda_sources=CUDA_SOURCE,
                  functions=["softmax_mode", "softmax_side_stream",
                             "softmax_pointer_repeat", "softmax_illegal_address", "softmax_race"])
