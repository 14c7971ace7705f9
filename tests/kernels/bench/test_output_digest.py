"""The output digest's comparison helpers, without a GPU."""
from __future__ import annotations

import torch

from kernels.bench.output_digest import difference, digest


def test_digest_sees_one_changed_bit_and_difference_measures_it():
    a = torch.linspace(-1, 1, 64, dtype=torch.float32).to(torch.bfloat16)
    b = a.clone()
    assert digest(a) == digest(b)
    b[7] = b[7] + 2 ** -6  # one element moved
    assert digest(a) != digest(b)
    assert difference(b, a).endswith(f"{1 / 64:.2e} of elements differ")
    assert difference(a, a).startswith("max|diff|/max|out| 0.00e+00")
