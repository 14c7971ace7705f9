"""Layer norm over the last dimension with affine weights, written out op by op (mean, var, normalize, scale)."""
import torch
import torch.nn as nn

batch_size = 512
hidden = 1024

M3LAB_META = {
    "shapes": [{"batch_size": 512, "hidden": 1024}, {"batch_size": 5, "hidden": 777}],
    "timing_shapes": [{"batch_size": 512, "hidden": 1024}],
    "timing_shapes_cuda": [{"batch_size": 4096, "hidden": 4096}],
    "random_shape": {"batch_size": [1, 64], "hidden": [8, 2048]},
    "tolerances": {"float32": [1e-4, 1e-4]},
    "forbidden_ops": ["layer_norm", "layernorm"],
    "trials": 2,
}


class Model(nn.Module):
    def __init__(self, hidden: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(1.0 + 0.1 * torch.randn(hidden))
        self.bias = nn.Parameter(0.1 * torch.randn(hidden))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


def get_inputs():
    return [torch.randn(batch_size, hidden) * 2 + 0.5]


def get_init_inputs():
    return [hidden]


def get_flops():
    return 8.0 * batch_size * hidden
