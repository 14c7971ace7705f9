"""Cheat 2 in CUDA: the kernel zeroes the caller's input after reading it. Caught by: the inputs handed back differ from the evaluator's copy."""
import torch.nn as nn
from cuda_cheat_kernels import ext


class ModelNew(nn.Module):
    def forward(self, x):
        return ext.softmax_mode(x.contiguous(), 3)
