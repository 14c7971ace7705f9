"""Honest CPU candidate for layernorm.py: centre once, the variance as a row dot product, one in-place scale by
rsqrt, one fused multiply-add for the affine part (three full passes fewer than the reference)."""
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self, hidden: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden))
        self.bias = nn.Parameter(torch.zeros(hidden))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xc = x - x.mean(dim=-1, keepdim=True)  # a new tensor: the in-place ops below never touch x
        rstd = torch.rsqrt(torch.linalg.vecdot(xc, xc).unsqueeze(-1) / x.shape[-1] + self.eps)
        return torch.addcmul(self.bias, xc.mul_(rstd), self.weight)
