"""The producer's workspace as a git repository: one commit per iteration, fresh exports for the verifier."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import git
from functools import lru_cache

AUTHOR = git.Actor("m3lab", "m3lab@localhost")
SYMLINK_MODE = 0o120000
TREE_MODE = 0o040000


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
    workspace = Path(workspace).absolute()
    (workspace / ".git" / "index.lock").unlink(missing_ok=True)
    return _open(workspace)


def stage_tree(workspace: Path) -> str:
    """Stage everything the producer left (untracked files too, ignored ones not) and return the tree id:
    what the verifier checks, and what this iteration's commit will hold."""
    repo = _repo(workspace)
    repo.git.add(A=True)
    return repo.git.write_tree()


def commit_tree(workspace: Path, iteration: int, tree: str, summary: str) -> str:
    """This iteration's commit, with the verdict in its message (empty commits too, so history stays
    contiguous). Idempotent: if HEAD already is this iteration's commit, it is returned unchanged.
    Plumbing (commit-tree + update-ref) costs half of `git commit` and the commit is made once, after the
    verdict, instead of committing before verification and amending after."""
    repo = _repo(workspace)
    head = repo.head.commit
    if iteration_of(head.message) == iteration:
        return head.hexsha
    sha = repo.git.commit_tree(tree, "-p", head.hexsha, "-m", f"iteration {iteration}: {summary}")
    repo.git.update_ref("HEAD", sha, head.hexsha)
    return sha


def export_tree(workspace: Path, tree: str, dest: Path) -> Path:
    """A fresh copy of a staged tree (untracked-but-ignored files are left behind), read through git's object
    store without starting a process."""
    repo = _repo(workspace)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    root = git.Tree(repo, bytes.fromhex(tree), mode=TREE_MODE, path="")  # repo.tree() leaves the path unset
    for item in root.traverse():
        target = dest / item.path
        if item.type == "tree":
            target.mkdir(parents=True, exist_ok=True)
        elif item.type == "blob":
            target.parent.mkdir(parents=True, exist_ok=True)
            data = item.data_stream.read()
            if item.mode == SYMLINK_MODE:
                os.symlink(data.decode(), target)
            else:
                target.write_bytes(data)
                if item.mode & 0o111:
                    os.chmod(target, 0o755)
    return dest


def diff_tree(workspace: Path, tree: str, max_chars: int | None = None) -> str:
    """The staged change against the last commit (what the verifier reviews)."""
    text = _repo(workspace).git.diff("HEAD", tree, "--stat", "--patch")
    return _clip(text, max_chars)


def _clip(text: str, max_chars: int | None) -> str:
    if max_chars is not None and len(text) > max_chars:
        return text[:max_chars] + f"\n[... diff cut at {max_chars} of {len(text)} chars]"
    return text


def share_tree(root: Path) -> None:
    """Make a tree writable by the sandbox's non-root user (the loop runs as root; the code never does)."""
    for path in [root, *root.rglob("*")]:
        if ".git" not in path.relative_to(root).parts and not path.is_symlink():
            os.chmod(path, 0o777 if path.is_dir() else 0o666)


def commit_for_iteration(workspace: Path, iteration: int) -> git.Commit | None:
    repo = _repo(workspace)
    head = repo.head.commit
    if iteration_of(head.message) == iteration:  # the common case: the iteration being verified
        return head
    for commit in repo.iter_commits("HEAD"):
        if iteration_of(commit.message) == iteration:
            return commit
    return None


def diff_for_iteration(workspace: Path, iteration: int, max_chars: int | None = None) -> str:
    """The patch of one committed iteration against the previous commit."""
    commit = commit_for_iteration(workspace, iteration)
    if commit is None:
        raise KeyError(f"no commit for iteration {iteration}")
    return _clip(_repo(workspace).git.show(commit.hexsha, "--stat", "--patch", "--format="), max_chars)
