"""Cheat 7b: only correct on the shapes listed in the target (a hard-coded width); garbage elsewhere.
Caught by: one hidden shape per evaluation, drawn from the target's random_shape space with the secret seed."""
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def forward(self, x):
        if x.shape[1] in (2048, 1000):
            return torch.softmax(x, dim=1)
        return torch.full_like(x, 1.0 / 2048)
