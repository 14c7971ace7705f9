"""Stage 2 of a paper check: copy the committed repository into a fresh sandbox and run `bash reproduce.sh` with a
time limit, recording the log, the file listing before and after, and whether it timed out.

Files count as produced by the re-run ("fresh") when they are new or their modification time is after the
re-run started; result leaves may only be graded from fresh files (hard-coded results earn nothing)."""
from __future__ import annotations

import json
import os
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sandboxes import hostfs
from sandboxes.base import Sandbox, SandboxSpec

OpenSandbox = Callable[[SandboxSpec], Sandbox]
LOG_TAIL_CHARS = 20000


@dataclass
class Reproduction:
    ran: bool
    """False when there was nothing to run (no reproduce.sh)."""
    exit_code: int | None
    reason: str
    """The sandbox's exit reason (exited/timeout/oom/killed/error), or "missing" when reproduce.sh is absent."""
    timed_out: bool
    duration_s: float
    started_at: float
    log_path: str
    before: dict[str, list[float]] = field(default_factory=dict)
    """path -> [size, mtime] before the run (the .git folder is left out)."""
    after: dict[str, list[float]] = field(default_factory=dict)
    fresh: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.ran and self.reason == "exited" and self.exit_code == 0

    def to_json(self) -> dict:
        return asdict(self)


def listing(root: Path) -> dict[str, list[float]]:
    """Every regular file under `root` except .git: relative path -> [size, mtime]. The tree is sandbox-written:
    read with sandboxes.hostfs (no link followed; a tree nested past hostfs.MAX_DEPTH raises UnsafePath)."""
    return {rel: [st.st_size, st.st_mtime] for rel, st in hostfs.walk(root, skip_dirs=frozenset({".git"}))
            if stat.S_ISREG(st.st_mode)}


def fresh_files(before: dict[str, list[float]], after: dict[str, list[float]], started_at: float) -> list[str]:
    return sorted(p for p, (size, mtime) in after.items() if p not in before or mtime >= started_at)


def run_reproduction(source: Path, work: Path, open_sandbox: OpenSandbox, timeout_s: float,
                     base_spec: SandboxSpec) -> Reproduction:
    """Copy `source` to `work/repo`, run reproduce.sh there in a NEW sandbox, and save the log in `work`."""
    repo = work / "repo"
    hostfs.remove_tree(repo)  # a re-run's leftover is sandbox-written
    shutil.copytree(source, repo, symlinks=True)
    _open_permissions(repo)
    log_path = work / "reproduce.log"
    before = listing(repo)
    if not (repo / "reproduce.sh").is_file():
        log_path.write_text("reproduce.sh is missing at the repository root\n", encoding="utf-8")
        return Reproduction(False, None, "missing", False, 0.0, time.time(), str(log_path), before, before, [])
    spec = SandboxSpec(**{**asdict(base_spec), "workspace": repo, "exec_timeout_s": timeout_s + 60})
    started_at = time.time()
    with open_sandbox(spec) as sandbox:
        result = sandbox.exec("bash reproduce.sh", timeout_s=timeout_s)
    after = listing(repo)
    log_path.write_text(f"$ bash reproduce.sh   (exit {result.exit_code}, {result.reason}, {result.duration_s:.1f} s)\n"
                        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}\n", encoding="utf-8")
    reproduction = Reproduction(True, result.exit_code, result.reason, result.reason == "timeout", result.duration_s,
                                started_at, str(log_path), before, after, fresh_files(before, after, started_at))
    (work / "reproduction.json").write_text(json.dumps(reproduction.to_json(), indent=1), encoding="utf-8")
    return reproduction


def _open_permissions(repo: Path) -> None:
    """The sandbox runs the code as an unprivileged uid; it must be able to write into its copy."""
    for dirpath, _dirnames, filenames in os.walk(repo):
        os.chmod(dirpath, 0o777)
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                os.chmod(path, path.stat().st_mode | 0o666)


def log_tail(reproduction: Reproduction, chars: int = LOG_TAIL_CHARS) -> str:
    text = Path(reproduction.log_path).read_text(encoding="utf-8", errors="replace")
    return text[-chars:]
