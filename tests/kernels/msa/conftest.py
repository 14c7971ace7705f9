"""Fixtures shared by the MSA kernel tests."""
from __future__ import annotations

import pytest


@pytest.fixture
def fresh_policy(monkeypatch, tmp_path):
    """The CUDA library policy as in a new process: no library loaded, no failure recorded, nothing logged, and an
    empty build cache. (kernels.msa.cuda is imported here, not at module level: the test modules set
    TRITON_INTERPRET before anything imports triton.)"""
    from kernels.msa import cuda

    monkeypatch.setattr(cuda, "_LIB", [])
    monkeypatch.setattr(cuda, "_UNAVAILABLE", [])
    monkeypatch.setattr(cuda, "_LOGGED", set())
    monkeypatch.setenv("M3LAB_MSA_CUDA_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def built_library(tmp_path_factory):
    """The CUDA library built once for the session's compile tests (both sources compile in parallel: ~90 s on
    2 cores), in its own cache directory."""
    from kernels.msa import cuda

    return cuda.build(cache_dir=tmp_path_factory.mktemp("msa_cuda_lib"))


@pytest.fixture
def row_exact_dot(monkeypatch):
    """On the CPU, the Triton interpreter's ``tl.dot`` as each output row's own products summed in k order.

    The interpreter hands ``tl.dot`` to numpy's matmul, and OpenBLAS's sgemm rounds a row differently by where it
    sits in the matrix (edge micro-kernels; seen with numpy 2.4's OpenBLAS 0.3.31: a row moved by one place changes
    in the last bit). A GPU's MMA has no such dependence, which is what the kernels' bit-for-bit batch and chunk
    invariance rests on; without this fixture a CPU invariance test would judge the BLAS build, not the kernels'
    tiles, unions and work lists. On a GPU it does nothing."""
    import torch

    if torch.cuda.is_available():
        return
    import numpy as np
    from triton.runtime import interpreter

    original = interpreter.InterpreterBuilder.create_dot

    def create_dot(self, a, b, d, *precision):  # noqa: ANN001, ANN002, ANN202 - Triton's own signature
        if a.data.dtype != np.float32 or b.data.dtype != np.float32:
            return original(self, a, b, d, *precision)
        acc = d.data.dtype
        products = a.data[..., :, :, None].astype(acc) * b.data[..., None, :, :].astype(acc)
        total = np.add.reduce(products, axis=-2)  # a strided axis: numpy adds the k slices one after another
        return interpreter.TensorHandle(total + d.data, d.dtype.scalar)

    monkeypatch.setattr(interpreter.InterpreterBuilder, "create_dot", create_dot)
