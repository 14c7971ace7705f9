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
