"""Cheat 8 in C++: half precision inside an fp32 kernel. Caught by: the fp32 tolerance (and a static warning)."""
import torch.nn as nn
from cxx_cheat_kernels import ext


class ModelNew(nn.Module):
    def forward(self, x):
        return ext.softmax_half_inside(x)
