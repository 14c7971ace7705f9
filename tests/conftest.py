"""Shared fixtures. Service fixtures (Docker engine, embedded vLLM server) live in tests/fixtures/ and are
loaded here so every test folder can use them."""
from __future__ import annotations

import shutil
import subprocess

import pytest

pytest_plugins = ["tests.fixtures.docker_engine", "tests.fixtures.vllm_server"]


def _has_cuda() -> bool:
    return shutil.which("nvidia-smi") is not None and subprocess.run(["nvidia-smi", "-L"],
                                                                     capture_output=True).returncode == 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`gpu` tests run only where a CUDA GPU is (the device machine); CI has none, so they skip there."""
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run through the device tool)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
