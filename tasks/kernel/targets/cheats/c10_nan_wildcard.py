"""Cheat 10: NaN where the answer is hard, hoping NaN compares as "close" (equal_nan) or is skipped.
Caught by: NaN/Inf in the output never pass where the reference is finite."""
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        out = torch.softmax(x, dim=1)
        out[:, 1::2] = float("nan")
        return out
