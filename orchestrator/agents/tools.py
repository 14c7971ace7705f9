"""Carrying out the producer's actions: file tools on the host copy of the workspace (bind-mounted at /work in
its sandbox) and commands in its sandbox. Failures become observations the model sees, never exceptions."""
from __future__ import annotations

import itertools
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestrator.agents.actions import TOOL_NAMES, Action
from orchestrator.rundir import disk_full
from sandboxes import hostfs
from sandboxes.base import ExecResult, Sandbox

MAX_LIST = 500
MAX_READ_BYTES = 8 << 20
"""The most of one file the file tools read (the sandbox decides how large a file is; observations are clipped
far below this anyway)."""


@dataclass(frozen=True)
class Observation:
    text: str
    ok: bool
    done: bool = False


def clip(text: str, limit: int) -> str:
    """Head and tail of a long text, with the cut said in the middle."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - limit} chars cut ...]\n{text[-half:]}"


def _relative(rel: str) -> str:
    """A workspace-relative path from what the model wrote (`/work/x`, `x`, `./x`); outside paths refused.
    Files are then reached with sandboxes.hostfs: a link the sandbox made is refused, never followed."""
    rel = rel.removeprefix("/work/").removeprefix("/work") or "."
    parts = hostfs.parts_of(os.path.normpath(rel))
    if any(_is_git(p) for p in parts):
        raise PermissionError("names starting with .git are not workspace files")
    return "/".join(parts) or "."


def _is_git(name: str) -> bool:
    return name.lower().rstrip(". ") == ".git"


def list_files(workspace: Path, rel: str = ".") -> str:
    base = _relative(rel)
    walker = hostfs.walk(workspace, base, skip_dirs=frozenset({"__pycache__"}))
    try:
        first = next(walker, None)
    except FileNotFoundError:
        raise FileNotFoundError(f"{rel} does not exist") from None
    names = []
    for sub, st in itertools.chain([first] if first else [], walker):
        name = sub if base == "." else f"{base}/{sub}"
        if stat.S_ISDIR(st.st_mode) or "__pycache__" in name.split("/"):
            continue
        kind = "link, not followed" if stat.S_ISLNK(st.st_mode) else f"{st.st_size} B"
        names.append(f"{name}  ({kind})")
        if len(names) >= MAX_LIST:
            names.append(f"[... more than {MAX_LIST} files]")
            break
    return "\n".join(names) or "(no files)"


def _read(workspace: Path, rel: str) -> tuple[bytes, bool]:
    """The file's first MAX_READ_BYTES, and whether it holds more."""
    data = hostfs.read_bytes(workspace, _relative(rel), MAX_READ_BYTES + 1)
    return data[:MAX_READ_BYTES], len(data) > MAX_READ_BYTES


def read_file(workspace: Path, rel: str, start: int | None = None, end: int | None = None) -> str:
    data, more = _read(workspace, rel)
    lines = data.decode("utf-8", errors="replace").splitlines()
    lo, hi = (start or 1), (end or len(lines))
    text = "\n".join(f"{i:5d}  {line}" for i, line in enumerate(lines[lo - 1:hi], start=lo)) or "(empty file)"
    return text + (f"\n[only the first {MAX_READ_BYTES} bytes of {rel} were read]" if more else "")


def write_file(workspace: Path, rel: str, content: str) -> str:
    hostfs.write_bytes(workspace, _relative(rel), content.encode("utf-8"), 0o666)
    return f"wrote {rel} ({len(content)} chars, {content.count(chr(10)) + 1} lines)"


def edit_file(workspace: Path, rel: str, old: str, new: str) -> str:
    data, more = _read(workspace, rel)
    if more:
        raise ValueError(f"{rel} is larger than {MAX_READ_BYTES} bytes: edit it with a command")
    text = data.decode("utf-8")
    count = text.count(old)
    if count != 1:
        raise ValueError(f"`old` occurs {count} times in {rel}; it must occur exactly once")
    hostfs.write_bytes(workspace, _relative(rel), text.replace(old, new, 1).encode("utf-8"), 0o666)
    return f"edited {rel}"


def format_exec(result: ExecResult, limit: int) -> str:
    head = f"exit code {result.exit_code} ({result.reason}, {result.duration_s:.1f} s)"
    if result.reason == "timeout":
        head += " - the command was killed at its time limit"
    elif result.reason == "oom":
        head += " - killed: out of memory"
    elif result.reason == "quota":
        head += " - stopped: the workspace went over its disk quota"
    parts = [head]
    if result.stdout:
        parts.append("stdout:\n" + clip(result.stdout, limit))
    if result.stderr:
        parts.append("stderr:\n" + clip(result.stderr, limit))
    return "\n".join(parts)


def execute(action: Action, workspace: Path, sandbox: Callable[[], Sandbox], exec_timeout_s: float,
            limit: int, on_quota: Callable[[], str] | None = None) -> tuple[Observation, ExecResult | None]:
    """Carry out one action; returns the observation and, for `run`, the raw exec result. A command that
    filled the workspace past its quota is followed by `on_quota` (the rollback), whose note is shown."""
    args = action.args
    if action.tool not in TOOL_NAMES:
        return Observation(f"unknown tool {action.tool!r}; tools: {', '.join(sorted(TOOL_NAMES))}", False), None
    try:
        if action.tool == "run":
            command = str(args["command"])
            timeout = float(args.get("timeout_s") or exec_timeout_s)
            result = sandbox().exec(command, timeout_s=min(timeout, exec_timeout_s))
            text = format_exec(result, limit)
            if result.reason == "quota" and on_quota is not None:
                text += "\n" + on_quota()
            return Observation(text, result.ok), result
        if action.tool == "done":
            return Observation("Submitted to the verifier.", True, done=True), None
        if action.tool == "list_files":
            text = list_files(workspace, str(args.get("path", ".")))
        elif action.tool == "read_file":
            text = read_file(workspace, str(args["path"]), args.get("start"), args.get("end"))
        elif action.tool == "write_file":
            text = write_file(workspace, str(args["path"]), str(args["content"]))
        else:
            text = edit_file(workspace, str(args["path"]), str(args["old"]), str(args["new"]))
        return Observation(clip(text, limit), True), None
    except KeyError as exc:
        return Observation(f"{action.tool}: missing argument {exc}", False), None
    except (OSError, ValueError, PermissionError, UnicodeDecodeError) as exc:
        if disk_full(exc):
            raise  # not the producer's to fix: the run pauses until there is room
        return Observation(f"{action.tool} failed: {exc}", False), None
