"""What the grader may look at: the re-run's copy of the repository, its record, and the paper bundle; and the text
of that evidence as a judge reads it, one text per kind of leaf (shared by every leaf of that kind in a batch).

Host code never trusts bytes the re-run wrote: files are read as text with a size cap, and symlinks are never
followed (`reproduce.listing` skips them; a committed link could point at host files)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sandboxes import hostfs
from tasks.paper.reproduce import Reproduction, listing, log_tail

CODE_SUFFIXES = {".py", ".sh", ".r", ".jl", ".m", ".cpp", ".c", ".h", ".cu", ".ipynb", ".toml", ".cfg", ".yaml", ".yml",
                 ".txt"}
TEXT_RESULTS = {".csv", ".json", ".txt", ".md", ".tsv"}
RESULT_DIRS = ("results", "figures")
MAX_FILE_CHARS = 6000
MAX_RESULT_FILE_CHARS = 2000
MAX_IMAGE_BYTES = 20 * 1024 * 1024
"""A re-run's figure larger than this is not sent to the judge (it is read whole and base64-encoded)."""
KINDS = ("code", "execution", "results")


@dataclass(frozen=True)
class Evidence:
    repo: Path
    reproduction: Reproduction
    paper_dir: Path

    def is_fresh(self, rel: str) -> bool:
        return rel in set(self.reproduction.fresh)


def kind_of(category: str) -> str:
    """Which evidence a leaf of this task_category is judged on."""
    return {"Code Development": "code", "Code Execution": "execution"}.get(category, "results")


def run_failure(rep: Reproduction) -> str:
    if not rep.ran:
        return "reproduce.sh is missing"
    if rep.timed_out:
        return f"reproduce.sh timed out after {rep.duration_s:.0f} s"
    return f"reproduce.sh failed (exit {rep.exit_code}, {rep.reason})"


def evidence_text(kind: str, ev: Evidence, max_chars: int) -> str:
    """The evidence of one kind, cut to `max_chars` (so a batch prompt fits the judge's context)."""
    if kind == "code":
        return "REPOSITORY FILES:\n" + code_excerpt(ev.repo, max_chars - 20)
    if kind == "execution":
        head = (f"reproduce.sh outcome: {'ok' if ev.reproduction.ok else run_failure(ev.reproduction)}\n"
                f"files written by the re-run: {ev.reproduction.fresh[:200]}"[: max_chars // 2] + "\nLOG (tail):\n")
        return head + log_tail(ev.reproduction, max(0, max_chars - len(head)))
    return "FILES WRITTEN BY THE RE-RUN:\n" + fresh_results(ev, max_chars - 30)


def code_excerpt(repo: Path, max_chars: int) -> str:
    parts: list[str] = []
    total = 0
    for rel in sorted(listing(repo)):
        if rel.startswith("paper/") or Path(rel).suffix.lower() not in CODE_SUFFIXES:
            continue
        text = _read_text(repo, rel, MAX_FILE_CHARS)
        if total + len(text) + len(rel) + 5 > max_chars:
            note = f"--- {rel} (left out: excerpt budget reached)"
            if total + len(note) <= max_chars:
                parts.append(note)
                total += len(note) + 1
            continue
        parts.append(f"--- {rel}\n{text}")
        total += len(text) + len(rel) + 5
    return "\n".join(parts) or "(no source files)"


def fresh_results(ev: Evidence, max_chars: int) -> str:
    parts: list[str] = []
    total = 0
    for rel in ev.reproduction.fresh:
        if Path(rel).suffix.lower() not in TEXT_RESULTS or not hostfs.is_regular(ev.repo, rel):
            entry = f"--- {rel} (binary or other)"
        else:
            entry = f"--- {rel}\n" + _read_text(ev.repo, rel, MAX_RESULT_FILE_CHARS)
        if total + len(entry) + 1 <= max_chars:
            parts.append(entry)
            total += len(entry) + 1
    return "\n".join(parts) or "(none)"


def _read_text(root: Path, rel: str, max_chars: int) -> str:
    """A sandbox-written file as text: a regular file reached without following any link, size-capped."""
    try:
        return hostfs.read_bytes(root, rel, max_chars * 4).decode("utf-8", errors="replace")[:max_chars]
    except (OSError, hostfs.UnsafePath):
        return "(unreadable: not a regular file)"


def figure_images(extra: dict, ev: Evidence) -> list[Path]:
    """The paper's figure, then the reproduced one (each only if it exists). The re-run's figure is
    sandbox-written: shown only as a regular file reached without links."""
    paper_png = ev.paper_dir / "figures" / f"{extra['figure']}.png"
    output = extra.get("output", "")
    shown = output and hostfs.is_regular(ev.repo, output) and hostfs.lstat(ev.repo, output).st_size <= MAX_IMAGE_BYTES
    return ([paper_png] if paper_png.is_file() else []) + ([ev.repo / output] if shown else [])
