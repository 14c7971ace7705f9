"""Cheat 9b (layernorm target): call the library op the target forbids (F.layer_norm) instead of a kernel.
Caught by: static check (the name's pieces are joined before matching), and the aten ops dispatched during every
correctness call (and a secret few timed-looking calls) are traced in the worker."""
import torch
import torch.nn as nn

_op = getattr(torch.nn.functional, "".join(["layer", "_", "norm"]))  # hides the name from a naive grep


class ModelNew(nn.Module):
    def __init__(self, hidden, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.bias = nn.Parameter(torch.zeros(hidden))
        self.eps = eps

    def forward(self, x):
        return _op(x, (x.shape[-1],), self.weight, self.bias, self.eps)
