"""The producer's workspace as a git repository: one commit per iteration, fresh exports for the verifier."""
from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import git
from functools import lru_cache

AUTHOR = git.Actor("m3lab", "m3lab@localhost")


def init_repo(workspace: Path) -> git.Repo:
    """Initialise the workspace repository and commit the starting files as iteration 0."""
    repo = git.Repo.init(workspace, initial_branch="main")
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", AUTHOR.name)
        cfg.set_value("user", "email", AUTHOR.email)
    repo.git.add(A=True)
    repo.index.commit("iteration 0: initial workspace", author=AUTHOR, committer=AUTHOR)
    return repo


def iteration_of(message: str) -> int | None:
    """The iteration number in a commit message `iteration N: ...`."""
    head = message.split(":", 1)[0]
    if head.startswith("iteration "):
        try:
            return int(head.split()[1])
        except (IndexError, ValueError):
            return None
    return None


@lru_cache(maxsize=8)
def _open(workspace: Path) -> git.Repo:
    return git.Repo(workspace)


def _repo(workspace: Path) -> git.Repo:
    """The workspace repo (cached: opening one starts git helper processes); a lock left by a killed git
    process is removed, since the run is the repository's only writer."""
    (workspace / ".git" / "index.lock").unlink(missing_ok=True)
    return _open(Path(workspace).resolve())


def commit_iteration(workspace: Path, iteration: int, summary: str) -> str:
    """Commit everything in the workspace for this iteration (empty commits too, so history stays contiguous).
    Idempotent: if HEAD already is this iteration's commit, it is returned unchanged."""
    repo = _repo(workspace)
    if iteration_of(repo.head.commit.message) == iteration:
        return repo.head.commit.hexsha
    repo.git.add(A=True)
    repo.git.commit("--allow-empty", "-q", "-m", f"iteration {iteration}: {summary}")
    return repo.head.commit.hexsha


def set_verdict_message(workspace: Path, iteration: int, verdict_line: str) -> str:
    """Put the verdict into this iteration's commit message (amend; the tree is unchanged)."""
    repo = _repo(workspace)
    if iteration_of(repo.head.commit.message) != iteration:
        return repo.head.commit.hexsha
    message = f"iteration {iteration}: {verdict_line}"
    if repo.head.commit.message.strip() != message:
        repo.git.commit("--amend", "--allow-empty", "-q", "-m", message)
    return repo.head.commit.hexsha


def export_head(workspace: Path, dest: Path) -> Path:
    """A fresh copy of the committed tree (untracked and ignored files are left behind)."""
    repo = _repo(workspace)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    data = io.BytesIO()
    repo.archive(data, treeish="HEAD", format="tar")
    data.seek(0)
    with tarfile.open(fileobj=data) as tar:
        tar.extractall(dest, filter="data")
    return dest


def share_tree(root: Path) -> None:
    """Make a tree writable by the sandbox's non-root user (the loop runs as root; the code never does)."""
    for path in [root, *root.rglob("*")]:
        if ".git" not in path.relative_to(root).parts and not path.is_symlink():
            os.chmod(path, 0o777 if path.is_dir() else 0o666)


def tree_id(workspace: Path) -> str:
    """Hash of HEAD's tree: equal trees mean the producer changed nothing."""
    return _repo(workspace).head.commit.tree.hexsha


def commit_for_iteration(workspace: Path, iteration: int) -> git.Commit | None:
    repo = _repo(workspace)
    if iteration_of(repo.head.commit.message) == iteration:  # the common case: the iteration being verified
        return repo.head.commit
    for commit in repo.iter_commits("HEAD"):
        if iteration_of(commit.message) == iteration:
            return commit
    return None


def diff_for_iteration(workspace: Path, iteration: int, max_chars: int | None = None) -> str:
    """The patch of one iteration against the previous commit."""
    commit = commit_for_iteration(workspace, iteration)
    if commit is None:
        raise KeyError(f"no commit for iteration {iteration}")
    text = _repo(workspace).git.show(commit.hexsha, "--stat", "--patch", "--format=")
    if max_chars is not None and len(text) > max_chars:
        text = text[:max_chars] + f"\n[... diff cut at {max_chars} of {len(text)} chars]"
    return text
