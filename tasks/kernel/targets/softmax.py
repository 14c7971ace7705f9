"""Row softmax, written the way a model author often writes it: max, subtract, exp, sum, divide (five passes)."""
import torch
import torch.nn as nn

batch_size = 256
dim = 2048

M3LAB_META = {
    "shapes": [{"batch_size": 256, "dim": 2048}, {"batch_size": 7, "dim": 1000}],
    "timing_shapes": [{"batch_size": 256, "dim": 2048}],
    "timing_shapes_cuda": [{"batch_size": 4096, "dim": 4096}],
    "random_shape": {"batch_size": [1, 64], "dim": [3, 3000]},
    "tolerances": {"float32": [1e-5, 1e-4]},
    "trials": 2,
}


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_max = x.max(dim=1, keepdim=True).values
        e = torch.exp(x - x_max)
        return e / e.sum(dim=1, keepdim=True)


def get_inputs():
    return [torch.randn(batch_size, dim) * 4]


def get_init_inputs():
    return []


def get_flops():
    return 5.0 * batch_size * dim
