"""What a task is: the contract between the run spine (orchestrator/) and a kind of work.

A task supplies the initial workspace, the producer's brief, a structural check that runs in a FRESH
sandbox, the verifier's brief, a score, and when to stop. Tasks never import the orchestrator: the spine
hands them a `CheckContext` with paths and callbacks.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from sandboxes.base import Sandbox, SandboxSpec
from tasks.text import clip_tail

RecordEvent = Callable[[Mapping[str, Any]], None]
"""Appends one event to the run's events.jsonl: the fields of `exec_fields` (the only kind a check records)."""

EXEC_TAIL_CHARS = 1500
"""Characters of stdout / stderr an `exec` event keeps (whole last lines); the full text goes to a log file."""
EXEC_CMD_CHARS = 500


def exec_fields(where: str, cmd: str, exit_code: int | None, reason: str, duration_s: float, stdout: str,
                stderr: str, log: str | None = None) -> dict[str, Any]:
    """The `exec` event of a command run in a sandbox (schema: orchestrator/README.md). Built here, the one place
    for every exec event: checks record it and tasks never import the orchestrator, whose producer uses it too.
    `where` is producer/check; `log` the run-relative file with the whole output, when one was written."""
    fields: dict[str, Any] = {
        "kind": "exec", "where": where,
        "cmd": cmd if len(cmd) <= EXEC_CMD_CHARS else cmd[:EXEC_CMD_CHARS] + " …",
        "exit_code": exit_code, "reason": reason, "duration_s": round(duration_s, 3),
        "stdout_tail": clip_tail(stdout, EXEC_TAIL_CHARS), "stderr_tail": clip_tail(stderr, EXEC_TAIL_CHARS)}
    if log is not None:
        fields["log"] = log
    return fields

Judge = Callable[[str, Sequence[Path]], str]
"""Asks the verifier's model: (prompt text, image paths to show it) -> reply text. Token use is counted
against the run's budget and recorded by the spine. Images are sent only when the model supports vision."""


@dataclass(frozen=True)
class CheckContext:
    """Everything a task's check may use. `workspace` is a fresh export of the producer's committed tree
    (untracked files removed); `open_sandbox` opens a NEW sandbox (never the producer's)."""

    workspace: Path
    run_dir: Path
    iteration: int
    open_sandbox: Callable[[SandboxSpec], Sandbox]
    record: RecordEvent
    judge: Judge | None = None
    """The verifier's model, for checks that need judgement (paper rubric grading); None in pure checks."""
    judge_prompt_chars: int | None = None
    """How many characters one judge prompt may hold on the verifier's server (None: unknown)."""
    offload: Callable[..., Any] | None = None
    """`offload(fn, *args, gpu=bool)` runs a picklable function elsewhere (a Ray task on a cluster) and returns
    its result; None = call it here. Paths passed must be on storage the other node sees (the shared runs_dir)."""


@dataclass
class CheckReport:
    """Outcome of a task's structural checks. `passed` is False unless the check positively passed."""

    passed: bool
    score: float
    """Task score: 0..1 for code/paper tasks; the verified speed-up (0 when incorrect) for kernel tasks."""
    summary: str
    """Short, concrete text the verifier and producer read (what failed and where)."""
    metrics: dict[str, float] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)
    evidence_path: str | None = None
    """File (relative to the run dir) holding the full evidence: logs, verdict JSON, listings."""

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "score": self.score,
            "summary": self.summary,
            "metrics": self.metrics,
            "findings": self.findings,
            "evidence_path": self.evidence_path,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckReport:
        return cls(
            passed=bool(data["passed"]),
            score=float(data["score"]),
            summary=str(data["summary"]),
            metrics=dict(data.get("metrics", {})),
            findings=list(data.get("findings", [])),
            evidence_path=data.get("evidence_path"),
        )


class Task(Protocol):
    """A kind of work the spine can run. Implementations are registered by `kind` in tasks/registry.py and
    must be re-creatable from `params()` alone (a resumed run rebuilds its task from run.json)."""

    kind: ClassVar[str]

    def params(self) -> dict[str, Any]:
        """JSON-able parameters from which `registry.build_task(kind, params)` rebuilds this task."""
        ...

    def title(self) -> str:
        """One line naming the task for listings."""
        ...

    def prepare_workspace(self, workspace: Path) -> None:
        """Fill the (empty) workspace with the starting files."""
        ...

    def producer_brief(self) -> str:
        """What the producer must achieve, how it is checked, and the rules (markdown)."""
        ...

    def main_file(self) -> str | None:
        """Workspace-relative file that a bare fenced code block from the model replaces, if any."""
        ...

    def sandbox_spec(self, workspace: Path) -> SandboxSpec:
        """Spec of the producer's sandbox (image, limits, GPU) for this workspace."""
        ...

    def check(self, ctx: CheckContext) -> CheckReport:
        """Structural verification in a fresh sandbox. Must not trust anything the producer claims."""
        ...

    def verifier_brief(self) -> str:
        """What the adversarial reviewer must hunt for in this kind of task."""
        ...

    def is_complete(self, report: CheckReport) -> bool:
        """True when an accepted (passed and reviewed) result ends the run, e.g. tests pass or the score
        target is met. Kernel searches return False until their target speed-up, so they run to budget."""
        ...

    def on_iteration_end(self, run_dir: Path, iteration: int, report: CheckReport, accepted: bool,
                         parent: int | None = None) -> None:
        """Task bookkeeping after the verdict (program database, plots). Must be idempotent. `parent`: the
        iteration whose files the producer started from (0: the starting files; None: the iteration before, as
        in the one-producer loop; a search with islands passes the island's own last or migrated iteration)."""
        ...

    def report_section(self, run_dir: Path) -> str:
        """Task-specific markdown for report.md (best result, tables, figures)."""
        ...
