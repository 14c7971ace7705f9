"""The host-side git wrapper and the run repository (issue 12), without a sandbox: what the host's git sees of its
environment, how staging treats links and git-looking names, and runs of the old layout."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.safegit import clean_env, git_text
from orchestrator.viewer.gitdiff import DiffUnavailable, iteration_diff
from orchestrator.workspace import LegacyRun, commit_tree, diff_for_iteration, export_tree, init_repo, stage_tree


def test_git_runs_with_a_clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("M3LAB_API_KEY", "sk-secret")
    monkeypatch.setenv("GIT_DIR", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'core.fsmonitor'='touch /tmp/x'")
    env = clean_env()
    assert "M3LAB_API_KEY" not in env and "GIT_DIR" not in env and "GIT_CONFIG_PARAMETERS" not in env
    assert env["GIT_CONFIG_NOSYSTEM"] == "1" and env["GIT_CONFIG_GLOBAL"] == "/dev/null"
    assert os.listdir(env["HOME"]) == []
    # What git itself reports: the overrides win over the repository's own config.
    ws, git_dir = tmp_path / "ws", tmp_path / "git"
    ws.mkdir()
    init_repo(git_dir, ws)
    with open(git_dir / "config", "a") as f:
        f.write('[core]\n\tfsmonitor = "touch /tmp/never"\n\thooksPath = /tmp\n')
    assert git_text(git_dir, "config", "core.fsmonitor").strip() == "false"
    assert git_text(git_dir, "config", "core.hooksPath").strip() == "/dev/null"


def test_staging_keeps_links_as_data_and_exports_drop_escaping_ones(tmp_path: Path) -> None:
    ws, git_dir = tmp_path / "ws", tmp_path / "git"
    (ws / "pkg").mkdir(parents=True)
    (ws / "pkg" / "a.py").write_text("A = 1\n")
    init_repo(git_dir, ws)
    (ws / "in.py").symlink_to("pkg/a.py")
    (ws / "up.py").symlink_to("../outside.py")
    (ws / "abs").symlink_to("/etc")
    (ws / "dirlink").symlink_to(tmp_path)  # a folder link: never entered
    (ws / ".GIT").mkdir()
    (ws / ".GIT" / "config").write_text("[core]\n")
    (ws / "sub" / ".git").mkdir(parents=True)
    (ws / "sub" / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (ws / "sub" / "kept.txt").write_text("data\n")
    os.mkfifo(ws / "fifo")
    tree = stage_tree(git_dir, ws)
    names = git_text(git_dir, "ls-tree", "-r", "--name-only", tree).split()
    assert sorted(names) == ["abs", "dirlink", "in.py", "pkg/a.py", "sub/kept.txt", "up.py"]
    out = export_tree(git_dir, tree, tmp_path / "export")
    assert (out.path / "in.py").read_text() == "A = 1\n"
    assert not os.path.lexists(out.path / "up.py") and not os.path.lexists(out.path / "abs")
    assert len(out.dropped) == 3 and all("symbolic link" in d for d in out.dropped)
    sha = commit_tree(git_dir, 1, tree, "pass")
    assert commit_tree(git_dir, 1, tree, "pass") == sha  # idempotent
    diff = diff_for_iteration(git_dir, 1)
    assert "diff --git a/pkg/a.py" not in diff and "diff --git a/up.py" in diff  # only iteration 1's change


def test_runs_of_the_old_layout_fail_with_a_clear_message(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "20260101-000000-code-dead"
    (run / "workspace" / ".git").mkdir(parents=True)
    (run / "iterations").mkdir()
    (run / "run.json").write_text(json.dumps({"id": run.name, "task": {"kind": "code", "params": {}}, "config": {}}))
    with pytest.raises(LegacyRun, match="sandbox-writable workspace"):
        diff_for_iteration(run / "git", 1)
    with pytest.raises(DiffUnavailable, match="start a new run"):
        iteration_diff(run, 1, None)
    from orchestrator.cli import app

    config = tmp_path / "m3lab.toml"
    config.write_text(f'runs_dir = "{tmp_path / "runs"}"\n')
    result = CliRunner().invoke(app, ["runs", "diff", run.name, "1", "--config", str(config)])
    assert result.exit_code == 2 and "start a new run" in result.output.replace("\n", " "), result.output
    assert "Traceback" not in result.output
    from orchestrator.config import Settings
    from orchestrator.runner import RunNotResumable, resume_run

    (run / "run.json").write_text(json.dumps({"id": run.name, "status": "paused", "config": Settings().to_json(),
                                              "task": {"kind": "code", "params": {
                                                  "source": str(tmp_path), "check_command": "true"}}}))
    with pytest.raises(RunNotResumable, match="start a new run"):
        resume_run(run, Settings(runs_dir=tmp_path / "runs"))
