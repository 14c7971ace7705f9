"""Shared fixtures. Service fixtures (Docker engine, embedded vLLM server) live in tests/fixtures/ and are
loaded here so every test folder can use them."""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys

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


def pytest_collection_finish(session: pytest.Session) -> None:
    """Under TRITON_INTERPRET, drop the interpreter's integer-overflow sanitizer when its asserts are off anyway.

    Triton 3.x builds, for every int32 add / sub / mul of a kernel, an int64 copy of the operation, two range compares
    and a ``device_assert`` -- which returns unchecked unless ``debug`` is on (``semantic.device_assert``). Compiled
    kernels drop that code; the interpreter runs it, and it took ~45 % of an interpreted prefill's time (cProfile of
    test_fp8_prefill_widened). The test modules have set TRITON_INTERPRET and imported triton by the end of
    collection, so the interpreter's one builder exists here; with ``debug`` on the sanitizer stays."""
    interpreter = sys.modules.get("triton.runtime.interpreter")
    if not os.environ.get("TRITON_INTERPRET") or interpreter is None:
        return
    builder = getattr(interpreter, "interpreter_builder", None)
    options = getattr(builder, "options", None)
    if options is not None and getattr(options, "sanitize_overflow", False) and not options.debug:
        builder.options = dataclasses.replace(options, sanitize_overflow=False)
