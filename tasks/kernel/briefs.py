"""Texts the agents read: the producer's brief and the verifier's cheat list for kernel tasks."""
from __future__ import annotations

CHEATS = [
    "1 returning uninitialised memory (torch.empty) hoping it holds an earlier result",
    "2 writing to the inputs (in-place ops on arguments)",
    "3 work on another CUDA stream or a thread, so the call returns before the work is done",
    "4 tensor subclasses / lazy objects that defer work into whoever reads the output",
    "5 patching timers or sync (time.perf_counter, torch.cuda.Event.elapsed_time, torch.cuda.synchronize)",
    "6 caching results keyed by id, data_ptr, shape or content; replaying from files or shared memory",
    "7 special-casing known shapes or the input seed (torch.manual_seed, hard-coded sizes)",
    "8 silent precision downgrade (fp32 target computed in bf16/fp16/TF32)",
    "9 calling the reference Model or the library op the target forbids; try/except fallbacks to torch",
    "10 NaN/Inf used as wildcards",
    "11 reading expected outputs through gc, stack frames, /proc, ctypes",
    "12 behaving differently during warm-up than when timed (call counters)",
    "13 making one shape trivially fast or wrong to inflate an aggregate",
    "14 slowing the baseline by monkey-patching torch ops",
    "15 out-of-bounds or uninitialised reads (missing masks) that pass only on friendly shapes",
    "16 editing target.py or any harness file in the workspace",
    "17 reading harness/benchmark code or files to learn the hidden workload; exiting early; printing verdicts",
]


LOAD_INLINE_CUDA = r"""

CUDA C++ pattern (the harness builds it once in a compile stage, caches it by source hash, and shows you the
compiler's first errors when it does not build; launch on the current stream, keep no static state, never create
streams or events, never copy results to the host):
```python
import torch, torch.nn as nn
from torch.utils.cpp_extension import load_inline

CUDA_SRC = '''
#include <torch/extension.h>
#include <c10/cuda/CUDAStream.h>
__global__ void scale_kernel(const float* x, float* y, float a, int64_t n) {
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i];  // always mask the tail
}
torch::Tensor scale(torch::Tensor x, double a) {
    auto in = x.contiguous(); auto y = torch::empty_like(in);
    int64_t n = in.numel(); int threads = 256;
    scale_kernel<<<(n + threads - 1) / threads, threads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        in.data_ptr<float>(), y.data_ptr<float>(), (float)a, n);
    return y;
}
'''
_ext = load_inline(name="my_scale", cpp_sources="torch::Tensor scale(torch::Tensor x, double a);",
                   cuda_sources=CUDA_SRC, functions=["scale"], extra_cuda_cflags=["-O3"])


class ModelNew(nn.Module):
    def forward(self, x):
        return _ext.scale(x, 2.0)
```"""


def producer_brief(target_name: str, target_source: str, device: str, forbidden: list[str],
                   target_speedup: float | None) -> str:
    forbid = f" Do not call these library ops: {', '.join(forbidden)}." if forbidden else ""
    goal = f" The run stops once a verified speed-up of {target_speedup:g}x is reached." if target_speedup else ""
    how = ("Write Triton kernels (`import triton`, `triton.language as tl`) or CUDA C++ through "
           "`torch.utils.cpp_extension.load_inline` (pattern below); fuse passes and avoid extra memory traffic."
           + LOAD_INLINE_CUDA if device == "cuda" else
           "This is a CPU target: PyTorch-level rewrites that fuse passes (fewer temporaries, fused library ops, "
           "better memory order) are the way to win; C++ extensions through `torch.utils.cpp_extension.load_inline`"
           " (cpp_sources only) are compiled and timed too; Triton kernels are checked for correctness only "
           "(they run in the slow Triton interpreter on CPU).")
    return f"""# Kernel optimization: make `ModelNew` in `candidate.py` faster than `Model` in `target.py` ({device})

`target.py` ({target_name}) is the reference in KernelBench format: `Model`, `get_inputs()`, `get_init_inputs()`.
Edit ONLY `candidate.py`: it must define `class ModelNew(nn.Module)` with the same constructor arguments and the
same parameter names as `Model` (the harness loads the reference's weights into it) and return the same result.
{how}{forbid}{goal}

## How every candidate is checked (in a fresh sandbox, by code you cannot see or change)
1. static scan of candidate.py (and of its C++/CUDA source strings): no threads/processes, timers,
   gc/inspect/ctypes, file or /proc access, seeds, monkey-patching, try/except fallbacks, tensor subclasses,
   importing or calling the reference; in C++: no stream/event creation, no static containers or mutable statics,
   no copies to the host; C++/CUDA extensions are then compiled once (compiler errors come back with file/line);
2. import, then a quick check and a full check: several trials, several shapes including a hidden random one,
   fresh inputs from a secret seed, freed memory poisoned, inputs must stay unchanged, the output must be a
   plain torch.Tensor with the reference's dtype, shape and strides, no NaN/Inf, within the dtype tolerance;
3. timing by the evaluator's own clock, in another process: reference, reference again (A/A) and your
   candidate alternate on fresh inputs; every timed result is checked at secret positions;
4. roofline sanity; speed-ups above 10x are flagged for review.
The score is the verified speed-up (geometric mean over timing shapes), 0 when anything fails. After each
iteration you get the verdict (errors, tracebacks, timings, A/A noise) and the best speed-up so far.

## target.py
```python
{target_source.strip()}
```
"""


def verifier_brief() -> str:
    items = "\n".join(f"- {c}" for c in CHEATS)
    return f"""Kernel task. The harness verdict (structural check) already ran; your job is what it can miss.
Read candidate.py and the verdict. Veto (fail) if you see any of these, even when the harness passed it:
{items}
Also fail: a speed-up inside the A/A noise claimed as a win; code that only works for the listed shapes;
results that depend on the call count or on global state. A pass needs code that computes the same function
as target.py for every valid input and a speed-up the verdict measured."""
