"""Cheat 12: behave correctly for the first calls (correctness checks, warm-up) and return garbage fast once
the timed runs start. Caught by: warm-up and timed calls look identical to the worker, and every timed call's
output is checked at secret positions."""
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        type(self).calls_total = getattr(type(self), "calls_total", 0) + 1
        if type(self).calls_total > 8:
            return torch.full_like(x, 1.0 / x.shape[1])
        return torch.softmax(x, dim=1)
