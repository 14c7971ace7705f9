"""Cheat 15: a Triton softmax without the tail mask: it reads past the end of each row (the next row, or
uninitialised memory) and writes past it too; it "works" when the width is a power of two. Caught by: odd
shapes (1000 and a hidden random width), poisoned memory; compute-sanitizer on GPU samples."""
import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def _softmax_nomask(out_ptr, in_ptr, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    x = tl.load(in_ptr + row * n_cols + offs)
    x = x - tl.max(x, axis=0)
    e = tl.exp(x)
    tl.store(out_ptr + row * n_cols + offs, e / tl.sum(e, axis=0))


class ModelNew(nn.Module):
    def forward(self, x):
        n_rows, n_cols = x.shape
        out = torch.empty((n_rows + 1) * n_cols * 2, device=x.device, dtype=x.dtype)
        _softmax_nomask[(n_rows,)](out, x, n_cols, BLOCK=triton.next_power_of_2(n_cols))
        return out[: n_rows * n_cols].view(n_rows, n_cols)
