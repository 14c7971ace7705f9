"""Cheat 6: cache results keyed by shape (or id/data_ptr/content hash) and replay them on later calls.
Caught by: every call gets fresh inputs from a secret seed, and each timed call's output is checked."""
import torch
import torch.nn as nn

_CACHE = {}


class ModelNew(nn.Module):
    def forward(self, x):
        key = tuple(x.shape)
        if key not in _CACHE:
            _CACHE[key] = torch.softmax(x, dim=1)
        return _CACHE[key].clone()
