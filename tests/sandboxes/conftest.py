"""`sandbox_factory`: opens sandboxes on one backend (the test runs once per backend) and closes them."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sandboxes import Sandbox, SandboxSpec, open_sandbox

Factory = Callable[..., Sandbox]


@pytest.fixture(params=[pytest.param("docker", marks=pytest.mark.docker), "process"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "docker":
        request.getfixturevalue("sandbox_image")
    else:
        request.getfixturevalue("bwrap")
    return request.param


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
def sandbox_factory(backend: str, workspace: Path) -> Iterator[Factory]:
    """`make(**spec_fields)` -> an open sandbox on `backend` with `workspace` at /work (no warm pool, so each
    test's containers are its own)."""
    opened: list[Sandbox] = []

    def make(**fields: object) -> Sandbox:
        fields.setdefault("workspace", workspace)
        fields.setdefault("exec_timeout_s", 60.0)
        sb = open_sandbox(SandboxSpec(**fields), backend=backend, pool=False)
        opened.append(sb)
        return sb

    yield make
    for sb in opened:
        sb.close()
