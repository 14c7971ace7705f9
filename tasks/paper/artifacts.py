"""Where a paper run keeps its files: `<run_dir>/artifacts/paper/` (the run-directory contract's task folder)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tasks.paper.grading import Grading


@dataclass(frozen=True)
class PaperArtifacts:
    run_dir: Path

    @property
    def root(self) -> Path:
        return self.run_dir / "artifacts" / "paper"

    @property
    def bundle(self) -> Path:
        return self.root / "bundle"

    @property
    def source_rubric(self) -> Path:
        """The rubric grading uses (outside the producer's reach; the workspace copy is informational)."""
        return self.root / "rubric.source.json"

    @property
    def graded_rubric(self) -> Path:
        return self.root / "rubric.json"

    @property
    def html(self) -> Path:
        return self.root / "report.html"

    def iteration(self, n: int) -> Path:
        return self.root / "iterations" / f"{n:04d}"

    def gradings(self) -> dict[int, Grading]:
        """Grading of every checked iteration, by iteration number."""
        found: dict[int, Grading] = {}
        for path in sorted((self.root / "iterations").glob("*/grades.json")):
            found[int(path.parent.name)] = Grading.from_json(json.loads(path.read_text(encoding="utf-8")))
        return found

    def best(self) -> tuple[int, Grading] | None:
        """Highest score; the later iteration on ties."""
        gradings = self.gradings()
        if not gradings:
            return None
        n = max(gradings, key=lambda i: (gradings[i].score, i))
        return n, gradings[n]
