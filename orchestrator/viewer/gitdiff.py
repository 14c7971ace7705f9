"""An iteration's change, read from the run's git directory (`runs/<id>/git/`, one commit per iteration).

Through orchestrator.workspace and safegit only: git runs on the host-side git directory with hooks, fsmonitor,
external diff and textconv off and no work tree, so nothing a sandbox wrote is ever run by a page view."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.safegit import GitFailed
from orchestrator.workspace import LegacyRun, commit_for_iteration, show_commit

_MAX_DIFF_CHARS = 400_000
_SHA = re.compile(r"^[0-9a-fA-F]{4,64}$")


class DiffUnavailable(LookupError):
    """The run has no git history or no commit for that iteration."""


@dataclass(frozen=True)
class IterationDiff:
    sha: str
    message: str
    patch: str
    truncated: bool

    def to_json(self) -> dict[str, Any]:
        return {"sha": self.sha, "message": self.message, "patch": self.patch, "truncated": self.truncated}


def iteration_diff(run_dir: Path, iteration: int, sha: str | None) -> IterationDiff:
    """The patch of the iteration's commit against its parent (the whole tree for the first commit)."""
    git_dir = run_dir / "git"
    try:
        if not (sha and _SHA.match(sha)):
            found = commit_for_iteration(git_dir, iteration)
            if found is None:
                raise DiffUnavailable(f"no commit for iteration {iteration} in the run's history")
            sha = found[0]
        full, message, patch = show_commit(git_dir, sha)
    except (LegacyRun, GitFailed) as exc:
        raise DiffUnavailable(f"commit {sha or '?'} of iteration {iteration}: {exc}") from exc
    return IterationDiff(sha=full, message=message, patch=patch[:_MAX_DIFF_CHARS],
                         truncated=len(patch) > _MAX_DIFF_CHARS)
