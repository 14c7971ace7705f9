"""Fixtures of the plugin tests: the tiny M3 directory (written once per session)."""
from pathlib import Path

import pytest

from serving.plugin.tiny_m3 import TinyM3Config, TokenizerNotFound, find_tokenizer_dir, write_tiny_m3
from tests.serving.plugin.tiny_server import missing_service


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        find_tokenizer_dir()
    except TokenizerNotFound as exc:
        missing_service(str(exc))
    return write_tiny_m3(tmp_path_factory.mktemp("tiny_m3") / "model", TinyM3Config())
