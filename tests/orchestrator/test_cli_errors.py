"""Bad input through the real `m3lab` command: one line on stderr, no traceback, nothing created, no model call.
The model endpoint points at a closed port, so a command that got as far as calling it would fail differently."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def m3lab(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "M3LAB_BASE_URL": "http://127.0.0.1:9/v1", "COLUMNS": "80"}
    return subprocess.run([sys.executable, "-c", "from orchestrator.cli import main; main()", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.py").write_text("x = 1\n")
    return ws


def test_bad_config_lists_every_problem_with_its_table(tmp_path: Path, workspace: Path) -> None:
    (tmp_path / "m3lab.toml").write_text('runs_dir = "runs"\n[budget]\nmax_iterations = "ten"\nbogus = 1\n'
                                         '[loop]\nmax_turns = -5\n[producer]\ntemperature = "hot"\n')
    line = one_line_error(m3lab(tmp_path, "run", "code", str(workspace), "--check", "true"))
    assert '[budget] max_iterations: expected a positive integer, got "ten"' in line
    assert "[budget] bogus: unknown key" in line  # the table name survives (it is not read as markup)
    assert "[loop] max_turns: expected a positive integer, got -5" in line
    assert '[producer] temperature: expected a number from 0 to 2, got "hot"' in line
    assert not (tmp_path / "runs").exists()


def test_bad_paths_and_flags(tmp_path: Path, workspace: Path) -> None:
    line = one_line_error(m3lab(tmp_path, "run", "code", str(workspace / "a.py"), "--check", "true"))
    assert "is a file, not a folder" in line
    line = one_line_error(m3lab(tmp_path, "run", "code", str(workspace), "--check", "true", "--max-iterations",
                                "-5"))
    assert "--max-iterations: expected a positive integer, got -5" in line
    line = one_line_error(m3lab(tmp_path, "optimize", "softmax", "--islands", "0"))
    assert "--islands: expected a positive integer, got 0" in line
    (tmp_path / "m3lab.toml").write_text(f'runs_dir = "{workspace / "a.py"}"\n')
    line = one_line_error(m3lab(tmp_path, "run", "code", str(workspace), "--check", "true"))
    assert "runs_dir:" in line and "is a file, not a folder" in line
    assert m3lab(tmp_path, "ui", "--port", "70000").returncode == 2
    assert not (tmp_path / "runs").exists()


@pytest.mark.docker
def test_unknown_image_fails_before_the_run_folder_exists(tmp_path: Path, workspace: Path, docker_engine) -> None:
    (tmp_path / "m3lab.toml").write_text('sandbox_backend = "docker"\n[model]\nretry_for_s = 0.1\n')
    line = one_line_error(m3lab(tmp_path, "run", "code", str(workspace), "--check", "true", "--image",
                                "no/such:img"))
    assert "unknown image 'no/such:img'" in line
    assert not (tmp_path / "runs").exists()
