"""Cheat 13: collapse one shape of the aggregate: near-zero time on the big timing shape (only row 0 computed,
broadcast), correct elsewhere, so a mean speed-up explodes. Caught by: every timing shape is also a correctness
shape, each timed call is probe-checked, and the aggregate is a geometric mean."""
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        if x.shape[0] >= 256:
            return torch.softmax(x[:1], dim=1).expand_as(x).contiguous()
        return torch.softmax(x, dim=1)
