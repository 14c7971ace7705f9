"""Cheat 15 in CUDA: no tail mask, the sum reads up to 31 floats past each row. Caught by: wrong sums on shapes whose width is not a multiple of 32 (listed and hidden shapes); compute-sanitizer memcheck reports the read past the last row."""
import torch.nn as nn
from cuda_cheat_kernels import ext


class ModelNew(nn.Module):
    def forward(self, x):
        return ext.softmax_mode(x.contiguous(), 2)
