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


def _nest(root: Path, depth: int) -> None:
    """A chain of `depth` folders under root, made one level at a time as a sandbox can (no path is too long)."""
    fd = os.open(root, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        sub = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = sub
    file = os.open("deep.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(file, b"at the bottom\n")
    os.close(file)
    os.close(fd)


def test_a_tree_nested_past_the_host_limits_is_refused_not_crashed(tmp_path: Path) -> None:
    """3,000 nested folders, past Python's recursion limit: the quota reads the tree as unmeasurable (over), the
    producer's tools answer, staging leaves the chain out, and the rollback removes it."""
    from orchestrator.agents.actions import Action
    from orchestrator.agents.tools import execute
    from orchestrator.workspace import restore_tree
    from sandboxes import hostfs, quota
    from sandboxes.base import SandboxSpec

    ws, git_dir = tmp_path / "ws", tmp_path / "git"
    ws.mkdir()
    (ws / "a.py").write_text("A = 1\n")
    head = init_repo(git_dir, ws)
    _nest(ws, 3000)
    try:
        with pytest.raises(hostfs.UnsafePath, match="nested"):
            hostfs.disk_usage(ws)
        assert quota.over_quota(SandboxSpec(workspace=ws, disk_mb=64)) == float("inf")
        obs, _ = execute(Action("list_files", {"path": "."}), ws, lambda: None, 10, 4000)  # type: ignore[arg-type, return-value]
        assert not obs.ok and "nested" in obs.text
        tree = stage_tree(git_dir, ws)
        assert git_text(git_dir, "ls-tree", "-r", "--name-only", tree).split() == ["a.py"]
        restore_tree(git_dir, git_text(git_dir, "rev-parse", f"{head}^{{tree}}").strip(), ws)
        assert sorted(os.listdir(ws)) == ["a.py"]
    finally:
        hostfs.remove_tree(ws)  # pytest's own clean-up (shutil.rmtree) could not remove the chain


def test_sandbox_sized_files_cost_the_host_bounded_memory(tmp_path: Path) -> None:
    """A file as large as the quota allows is staged, exported, read and diffed without the host holding it
    (before: twice its size in memory at staging and export, the whole patch at `runs diff` and in the viewer)."""
    import tracemalloc

    from orchestrator.agents.tools import read_file

    ws, git_dir = tmp_path / "ws", tmp_path / "git"
    ws.mkdir()
    init_repo(git_dir, ws)
    with open(ws / "big.bin", "wb") as f:
        f.truncate(256 << 20)  # sparse: costs the test no disk
    line = "x" * 99 + "\n"
    for name in ("a.txt", "b.txt"):
        (ws / name).write_text(line * 100_000)  # 10 MB each: a 20 MB patch
    tracemalloc.start()
    try:
        tree = stage_tree(git_dir, ws)
        commit_tree(git_dir, 1, tree, "fail")
        out = export_tree(git_dir, tree, tmp_path / "export")
        diff = diff_for_iteration(git_dir, 1)
        text = read_file(ws, "big.bin", 1, 2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 80 << 20, f"peak {peak >> 20} MB"
    assert (out.path / "big.bin").stat().st_size == 256 << 20 and (out.path / "a.txt").read_text() == line * 100_000
    assert "Bin 0 -> 268435456 bytes" in diff and diff.endswith(f"[... diff cut at {16 << 20} bytes]")
    assert "only the first" in text


def test_entries_that_hold_no_bytes_still_count_against_the_quota(tmp_path: Path) -> None:
    """Empty files, folders and links use the host's inodes: at zero bytes, millions would pass any quota."""
    from sandboxes import hostfs

    for i in range(1000):
        (tmp_path / f"e{i}").touch()
    assert hostfs.disk_usage(tmp_path) >= 1000 * 4096  # an inode and a block each


def test_paths_longer_than_the_system_allows_are_exported_and_shared(tmp_path: Path) -> None:
    """20 folders of 250-character names: every step reaches them one component at a time (before: sharing the
    verifier's copy failed with ENAMETOOLONG, which failed the run)."""
    from orchestrator.workspace import restore_tree, share_tree

    ws, git_dir = tmp_path / "ws", tmp_path / "git"
    ws.mkdir()
    head = init_repo(git_dir, ws)
    fd = os.open(ws, os.O_RDONLY)
    for _ in range(20):
        os.mkdir("n" * 250, dir_fd=fd)
        sub = os.open("n" * 250, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = sub
    file = os.open("x.py", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd)
    os.close(file)
    os.close(fd)
    tree = stage_tree(git_dir, ws)
    out = export_tree(git_dir, tree, tmp_path / "export")
    share_tree(out.path)
    assert git_text(git_dir, "ls-tree", "-r", "--name-only", tree).strip().endswith("/x.py")
    restore_tree(git_dir, git_text(git_dir, "rev-parse", f"{head}^{{tree}}").strip(), ws)
    assert os.listdir(ws) == []
