"""FP8 (e4m3) GEMM with per-tensor scales, bf16 output: dequantize both operands to fp32, matmul, cast (GPU only)."""
import torch
import torch.nn as nn

M = 2048
N = 2048
K = 2048

M3LAB_META = {
    "shapes": [{"M": 2048, "N": 2048, "K": 2048}, {"M": 256, "N": 512, "K": 384}],
    "timing_shapes_cuda": [{"M": 4096, "N": 4096, "K": 4096}],
    "tolerances": {"bfloat16": [2e-2, 2e-2]},
    "devices": ["cuda"],
    "trials": 2,
}


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, a: torch.Tensor, b: torch.Tensor, scale_a: torch.Tensor, scale_b: torch.Tensor) -> torch.Tensor:
        # a: (M, K) e4m3, b: (N, K) e4m3; output (M, N) bf16
        return ((a.float() * scale_a) @ (b.float() * scale_b).t()).to(torch.bfloat16)


def get_inputs():
    a = (torch.randn(M, K) * 2).to(torch.float8_e4m3fn)
    b = (torch.randn(N, K) * 2).to(torch.float8_e4m3fn)
    return [a, b, torch.tensor(0.05 + torch.rand(()).item() * 0.1), torch.tensor(0.05 + torch.rand(()).item() * 0.1)]


def get_init_inputs():
    return []


def get_flops():
    return 2.0 * M * N * K
