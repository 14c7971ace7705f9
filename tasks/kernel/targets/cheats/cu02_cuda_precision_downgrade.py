"""Cheat 8 in CUDA: results rounded through half precision inside an fp32 kernel. Caught by: the fp32 tolerance."""
import torch.nn as nn
from cuda_cheat_kernels import ext


class ModelNew(nn.Module):
    def forward(self, x):
        return ext.softmax_mode(x.contiguous(), 1)
