"""Honest GPU candidate for fp8_gemm.py: the tensor-core FP8 GEMM (torch._scaled_mm) with fp32 accumulation."""
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, a: torch.Tensor, b: torch.Tensor, scale_a: torch.Tensor, scale_b: torch.Tensor) -> torch.Tensor:
        return torch._scaled_mm(a, b.t(), scale_a=scale_a.float(), scale_b=scale_b.float(), out_dtype=torch.bfloat16)
