"""Bad specs get clear errors before anything starts; result classification. No service needed."""
from __future__ import annotations

from pathlib import Path

import pytest

from sandboxes import InvalidSpec, SandboxError, SandboxSpec, inside_path, open_sandbox
from sandboxes.outcome import TailBuffer, classify
from sandboxes.validate import spec_problems, validate_spec


def test_default_spec_is_valid(tmp_path: Path) -> None:
    assert spec_problems(SandboxSpec(workspace=tmp_path)) == []


def test_negative_limits_are_all_reported() -> None:
    spec = SandboxSpec(memory_mb=-1, cpus=-2, pids=0, tmpfs_mb=-5, exec_timeout_s=-1, lifetime_s=0, max_file_mb=0)
    with pytest.raises(InvalidSpec) as err:
        validate_spec(spec)
    msg = str(err.value)
    for field in ("memory_mb", "cpus", "pids", "tmpfs_mb", "exec_timeout_s", "lifetime_s", "max_file_mb"):
        assert field in msg


@pytest.mark.parametrize("user", ["0", "0:0", "root", "1000:abc", ""])
def test_root_or_malformed_user_rejected(user: str) -> None:
    with pytest.raises(InvalidSpec, match="user"):
        validate_spec(SandboxSpec(user=user))


def test_missing_workspace_and_bad_env(tmp_path: Path) -> None:
    spec = SandboxSpec(workspace=tmp_path / "nope", env={"BAD-KEY": "x"}, host_paths=(Path("relative"),))
    problems = spec_problems(spec)
    assert len(problems) == 3, problems


@pytest.mark.parametrize("backend", ["docker", "process", "auto"])
def test_bad_spec_raises_before_start_on_every_backend(backend: str) -> None:
    with pytest.raises(InvalidSpec, match="memory_mb"):
        open_sandbox(SandboxSpec(memory_mb=-1), backend=backend)


def test_unknown_backend() -> None:
    with pytest.raises(InvalidSpec, match="backend"):
        open_sandbox(SandboxSpec(), backend="vm")


def test_invalid_spec_is_a_sandbox_error() -> None:
    assert issubclass(InvalidSpec, SandboxError)


def test_inside_path_moves_paths_under_work() -> None:
    assert inside_path("/work/main/.venv") == "/host/work/main/.venv"
    assert inside_path(Path("/opt/venv")) == "/opt/venv"


def test_classify() -> None:
    assert classify(0, 0.1, 10, oom=False) == "exited"
    assert classify(137, 0.5, 10, oom=True) == "oom"
    assert classify(124, 10.0, 10, oom=False) == "timeout"
    assert classify(137, 12.0, 10, oom=False) == "timeout"
    assert classify(137, 1.0, 10, oom=False) == "killed"


def test_tail_buffer_keeps_the_tail() -> None:
    buf = TailBuffer(cap=10)
    for i in range(100):
        buf.write(f"{i:03d}".encode())
    text = buf.text()
    assert text.endswith("098099") and "dropped" in text
