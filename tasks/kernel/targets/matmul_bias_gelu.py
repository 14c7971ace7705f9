"""y = GELU(x @ W^T + b) with the tanh GELU written out elementwise (seven elementwise passes after the GEMM)."""
import math

import torch
import torch.nn as nn

batch_size = 256
in_features = 512
out_features = 512

M3LAB_META = {
    "shapes": [{"batch_size": 256, "in_features": 512, "out_features": 512},
               {"batch_size": 3, "in_features": 65, "out_features": 129}],
    "timing_shapes": [{"batch_size": 256, "in_features": 512, "out_features": 512}],
    "timing_shapes_cuda": [{"batch_size": 4096, "in_features": 4096, "out_features": 4096}],
    "random_shape": {"batch_size": [1, 48], "in_features": [16, 300], "out_features": [16, 300]},
    "tolerances": {"float32": [2e-4, 2e-4]},
    "trials": 2,
}


class Model(nn.Module):
    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / math.sqrt(in_features))
        self.bias = nn.Parameter(0.1 * torch.randn(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.weight.t() + self.bias
        inner = math.sqrt(2.0 / math.pi) * (y + 0.044715 * y * y * y)
        return 0.5 * y * (1.0 + torch.tanh(inner))


def get_inputs():
    return [torch.randn(batch_size, in_features)]


def get_init_inputs():
    return [in_features, out_features]


def get_flops():
    return 2.0 * batch_size * in_features * out_features + 10.0 * batch_size * out_features
