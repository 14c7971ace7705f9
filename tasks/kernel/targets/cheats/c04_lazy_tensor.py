"""Cheat 4: return a tensor subclass whose work is deferred into whoever reads it (the checker).
Caught by: static check (Tensor subclass), and the output must be a plain torch.Tensor."""
import torch
import torch.nn as nn


class LazySoftmax(torch.Tensor):
    @staticmethod
    def __new__(cls, x):
        return torch.Tensor._make_subclass(cls, torch.softmax(x, dim=1))


class ModelNew(nn.Module):
    def forward(self, x):
        return LazySoftmax(x)
