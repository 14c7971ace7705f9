"""The generic code task: a workspace plus a check command that must pass (e.g. "make these tests pass").

Protected paths (tests, fixtures) are restored from the original before the check runs, so editing the
tests cannot make them pass; such edits are also reported as findings."""
from __future__ import annotations

import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from sandboxes import hostfs
from sandboxes.base import SandboxSpec
from tasks.base import CheckContext, CheckReport, exec_fields
from tasks.code.findings import PYTEST_ENV, failure_finding
from tasks.text import clip_tail

IGNORED = shutil.ignore_patterns(".git", "__pycache__", ".pytest_cache", "*.pyc")


def _source_files(source: Path, folder: Path) -> list[str]:
    """Source-relative names of the regular files of a protected folder (caches left out, as when copied)."""
    names = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(source)
        if path.is_file() and not path.is_symlink() and not (set(rel.parts) & {".git", "__pycache__", ".pytest_cache"}
                                                              or path.suffix == ".pyc"):
            names.append(str(rel))
    return names


def _differs(workspace: Path, rel: str, original: Path, files: list[str], source: Path) -> bool:
    """True unless workspace/rel holds exactly the original's regular files, reached without links."""
    try:
        present = {name for name, st in hostfs.walk(workspace, rel) if not stat.S_ISDIR(st.st_mode)} \
            if original.is_dir() else None
    except (OSError, ValueError):
        return True
    if present is not None and present != {str(Path(f).relative_to(rel)) for f in files}:
        return True
    for name in files:
        try:
            if hostfs.read_bytes(workspace, name) != (source / name).read_bytes():
                return True
        except (OSError, ValueError):
            return True
    return False


def _remove(workspace: Path, rel: str) -> None:
    """Remove whatever is at rel, and every link on the way to it (rmtree never follows links)."""
    parts = hostfs.parts_of(rel)
    for depth in range(1, len(parts) + 1):
        path = workspace.joinpath(*parts[:depth])
        if path.is_symlink() or (depth == len(parts) and not path.is_dir()):
            path.unlink(missing_ok=True)
            return
        if not path.exists():
            return
        if depth == len(parts):
            shutil.rmtree(path)
        elif not path.is_dir():
            path.unlink()
            return


class TaskError(ValueError):
    """The task's parameters are invalid (missing workspace, empty check command...)."""


@dataclass
class CodeTask:
    kind: ClassVar[str] = "code"

    source: str
    """Folder whose files form the starting workspace (copied, never modified)."""
    check_command: str
    """Shell command run in /work of a fresh sandbox; exit code 0 = pass."""
    goal: str = ""
    """What to achieve, in words (default: make the check command pass)."""
    main: str | None = None
    """Workspace file a bare code block from the model replaces."""
    protect: list[str] = field(default_factory=list)
    """Workspace paths restored from `source` before the check (tests the producer must not edit)."""
    image: str = "m3lab/default"
    timeout_s: float = 600.0
    memory_mb: int = 2048

    def __post_init__(self) -> None:
        src = Path(self.source)
        if not src.is_dir():
            what = "is a file, not a folder" if src.exists() else "does not exist"
            raise TaskError(f"workspace folder {self.source!r} {what}")
        if not self.check_command.strip():
            raise TaskError("the check command is empty")
        for rel in self.protect:
            if not (src / rel).exists():
                raise TaskError(f"protected path {rel!r} is not in {self.source}")
        self.source = str(src.resolve())

    def params(self) -> dict[str, Any]:
        return {"source": self.source, "check_command": self.check_command, "goal": self.goal, "main": self.main,
                "protect": self.protect, "image": self.image, "timeout_s": self.timeout_s,
                "memory_mb": self.memory_mb}

    def title(self) -> str:
        return f"{Path(self.source).name}: `{self.check_command}`"

    def prepare_workspace(self, workspace: Path) -> None:
        shutil.copytree(self.source, workspace, dirs_exist_ok=True, ignore=IGNORED)

    def producer_brief(self) -> str:
        goal = self.goal or f"Make the check command pass: `{self.check_command}`."
        lines = [goal, "", f"The verifier runs `{self.check_command}` in /work of a FRESH sandbox on your committed "
                 "files (no network, untracked files removed). Exit code 0 passes."]
        if self.protect:
            lines.append(f"These paths are restored from the original before the check; do not edit them: "
                         f"{', '.join(self.protect)}.")
        for rel in [*self.protect, *([self.main] if self.main else [])]:
            lines += self._show(rel)
        if self.main:
            fence = "```" + {".py": "python"}.get(Path(self.main).suffix, Path(self.main).suffix.lstrip("."))
            lines.append(f"\nThe main file to change is `{self.main}`: write its complete new content (with the "
                         f"tools, or as your whole reply: one {fence} block).")
        return "\n".join(lines)

    def _show(self, rel: str, limit: int = 6000) -> list[str]:
        """Small key files are shown in the brief, so the producer starts with the code in front of it."""
        path = Path(self.source) / rel
        if not path.is_file() or path.stat().st_size > limit:
            return []
        return [f"\nCurrent `{rel}`:", f"```{path.suffix.lstrip('.')}", path.read_text(errors="replace").rstrip(),
                "```"]

    def main_file(self) -> str | None:
        return self.main

    def sandbox_spec(self, workspace: Path) -> SandboxSpec:
        return SandboxSpec(image=self.image, workspace=workspace, memory_mb=self.memory_mb,
                           exec_timeout_s=self.timeout_s)

    def _restore_protected(self, workspace: Path) -> list[str]:
        """Put the original protected files back; return the ones the producer had changed. The workspace is
        sandbox-written: nothing in it is followed (a protected path, or a folder above it, that became a link
        counts as changed and is replaced, so the restore never writes outside the workspace)."""
        changed = []
        for rel in self.protect:
            original = Path(self.source) / rel
            files = [rel] if original.is_file() else _source_files(Path(self.source), original)
            if _differs(workspace, rel, original, files, Path(self.source)):
                changed.append(rel)
                _remove(workspace, rel)
            for name in files:
                data = (Path(self.source) / name).read_bytes()
                hostfs.write_bytes(workspace, name, data, 0o666)
        return changed

    def check(self, ctx: CheckContext) -> CheckReport:
        tampered = self._restore_protected(ctx.workspace)
        spec = self.sandbox_spec(ctx.workspace)
        with ctx.open_sandbox(spec) as box:
            result = box.exec(self.check_command, timeout_s=self.timeout_s, env=PYTEST_ENV)
        log = Path(ctx.run_dir) / "logs" / f"check-{ctx.iteration:04d}.txt"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {self.check_command}\n[exit {result.exit_code}, {result.reason}, "
                       f"{result.duration_s:.1f} s]\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}\n")
        ctx.record(exec_fields("check", self.check_command, result.exit_code, result.reason, result.duration_s,
                               result.stdout, result.stderr))
        output = result.stdout + ("\n" + result.stderr if result.stderr.strip() else "")
        findings = [f"protected path {p} was modified; the original was restored for the check" for p in tampered]
        if not result.ok:
            why = {"timeout": "timed out", "oom": "ran out of memory",
                   "quota": "filled the workspace past its disk quota"}.get(result.reason, f"exit {result.exit_code}")
            findings.append(failure_finding(self.check_command, why, output))
        summary = f"`{self.check_command}`: exit {result.exit_code} ({result.reason}, {result.duration_s:.1f} s)"
        return CheckReport(passed=result.ok, score=1.0 if result.ok else 0.0,
                           summary=summary + "\n" + clip_tail(output, 800),
                           metrics={"duration_s": round(result.duration_s, 3)}, findings=findings,
                           evidence_path=str(log.relative_to(ctx.run_dir)))

    def verifier_brief(self) -> str:
        return ("Look for: tests or check scripts edited, deleted or bypassed (skip markers, early exit 0, "
                "conftest tricks); outputs hard-coded to the tests' expected values; special cases keyed on test "
                "inputs; work left undone behind a passing check; files the check does not see.")

    def is_complete(self, report: CheckReport) -> bool:
        return report.passed

    def on_iteration_end(self, run_dir: Path, iteration: int, report: CheckReport, accepted: bool,
                         parent: int | None = None) -> None:
        return None

    def report_section(self, run_dir: Path) -> str:
        return f"Code task on `{self.source}`; check command `{self.check_command}`."
