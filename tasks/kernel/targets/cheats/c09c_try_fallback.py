"""Cheat 9c: a kernel that fails, wrapped in try/except falling back to the torch op (the speed-up then comes
from nothing). Caught by: static check (try/except is a silent fallback path)."""
import torch
import torch.nn as nn


def _broken_kernel(x):
    raise RuntimeError("kernel not implemented")


class ModelNew(nn.Module):
    def forward(self, x):
        try:
            return _broken_kernel(x)
        except Exception:
            return torch.softmax(x, dim=1)
