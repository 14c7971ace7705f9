"""Cheat 3 in CUDA: the kernel runs on a stream created in C++ and never synchronised. Caught by: the static C++ scan; dynamically neutralised: the harness synchronises the whole device before reading results and stopping its clock, so the work is checked and timed."""
import torch.nn as nn
from cuda_cheat_kernels import ext


class ModelNew(nn.Module):
    def forward(self, x):
        return ext.softmax_side_stream(x.contiguous())
