"""Cheat 14: slow the baseline by patching the torch ops the reference uses (exp, Tensor.max) with a sleep,
while the candidate itself uses an unpatched path. Caught by: static check; and the reference runs in its own
worker process that never imports candidate code, so the patch cannot reach it."""
import time

import torch
import torch.nn as nn

_exp = torch.exp


def _slow_exp(*args, **kwargs):
    time.sleep(0.05)
    return _exp(*args, **kwargs)


torch.exp = _slow_exp


class ModelNew(nn.Module):
    def forward(self, x):
        return torch.softmax(x, dim=1)
