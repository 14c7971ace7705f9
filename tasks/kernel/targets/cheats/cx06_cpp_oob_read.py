"""Cheat 15 in C++: no tail mask, reads past the row on unfriendly shapes. Caught by: the second listed shape and the hidden random shape."""
import torch.nn as nn
from cxx_cheat_kernels import ext


class ModelNew(nn.Module):
    def forward(self, x):
        return ext.softmax_no_tail_mask(x)
