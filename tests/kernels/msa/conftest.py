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
