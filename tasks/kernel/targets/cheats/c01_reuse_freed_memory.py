"""Cheat 1: return uninitialised memory, hoping the allocator hands back a freed block holding the expected
output (the reference's, in harnesses that run both in one process). Caught by: the reference never runs in
this process, and freed memory is poisoned (MALLOC_PERTURB_ / 0xFF fill on CUDA)."""
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        return torch.empty_like(x)
