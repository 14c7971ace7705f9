"""Cheat 2 in C++: zeroes the caller's input after computing. Caught by: the inputs the worker hands back differ from the evaluator's copy."""
import torch.nn as nn
from cxx_cheat_kernels import ext


class ModelNew(nn.Module):
    def forward(self, x):
        return ext.softmax_zero_input(x)
