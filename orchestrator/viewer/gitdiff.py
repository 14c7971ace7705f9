"""An iteration's change, read from the run's workspace git history (one commit per producer iteration)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_MAX_DIFF_CHARS = 400_000
_SHA = re.compile(r"^[0-9a-fA-F]{4,64}$")


class DiffUnavailable(LookupError):
    """The workspace has no git history or no commit for that iteration."""


@dataclass(frozen=True)
class IterationDiff:
    sha: str
    message: str
    patch: str
    truncated: bool

    def to_json(self) -> dict[str, Any]:
        return {"sha": self.sha, "message": self.message, "patch": self.patch, "truncated": self.truncated}


def _find_commit(repo: Any, iteration: int) -> Any:
    """The commit whose message starts with `iteration N:` (used when iterations/NNNN.json names none)."""
    pattern = re.compile(rf"^iteration {iteration}\b")
    for commit in repo.iter_commits():
        if pattern.match(commit.message):
            return commit
    raise DiffUnavailable(f"no commit for iteration {iteration} in the workspace history")


def iteration_diff(workspace: Path, iteration: int, sha: str | None) -> IterationDiff:
    """The patch of the iteration's commit against its parent (the whole tree for the first commit)."""
    import git  # gitpython: imported here so the viewer starts without touching git

    try:
        repo = git.Repo(workspace)
    except (git.NoSuchPathError, git.InvalidGitRepositoryError) as exc:
        raise DiffUnavailable(f"{workspace} is not a git repository") from exc
    try:
        if sha and _SHA.match(sha):
            commit = repo.commit(sha)
        else:
            commit = _find_commit(repo, iteration)
        patch = repo.git.show(commit.hexsha, "--format=", "--patch", "--stat", "--no-color", "--no-ext-diff")
        return IterationDiff(
            sha=commit.hexsha,
            message=str(commit.message).strip(),
            patch=patch[:_MAX_DIFF_CHARS],
            truncated=len(patch) > _MAX_DIFF_CHARS,
        )
    except (ValueError, git.BadName, git.GitCommandError) as exc:
        raise DiffUnavailable(f"commit {sha or '?'} of iteration {iteration}: {exc}") from exc
    finally:
        repo.close()
