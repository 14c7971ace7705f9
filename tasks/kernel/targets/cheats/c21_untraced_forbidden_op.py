"""Cheat 9b, timed calls only (layernorm): the aten-op trace used to run on the first correctness call of each
shape only, and a correctness model sees at most `trials` calls while a timing model sees dozens: past its second
call this model is being timed, and it calls the op the target forbids (F.layer_norm, its name built from pieces).
Caught by: the static check (constant-folded names), and secret traced calls among the timed ones."""
import torch
import torch.nn as nn
import torch.nn.functional as F

_fast = getattr(F, "layer" + "_" + "norm")


class ModelNew(nn.Module):
    def __init__(self, hidden, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.bias = nn.Parameter(torch.zeros(hidden))
        self.eps = eps
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls > 2:
            return _fast(x, (x.shape[-1],), self.weight, self.bias, self.eps)
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias
