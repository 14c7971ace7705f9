"""Carrying out the producer's actions: file tools on the host copy of the workspace (bind-mounted at /work in
its sandbox) and commands in its sandbox. Failures become observations the model sees, never exceptions."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from orchestrator.agents.actions import TOOL_NAMES, Action
from orchestrator.rundir import disk_full
from sandboxes.base import ExecResult, Sandbox

MAX_LIST = 500


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


def _resolve(workspace: Path, rel: str) -> Path:
    rel = rel.removeprefix("/work/").removeprefix("/work") or "."
    path = (workspace / rel).resolve()
    root = workspace.resolve()
    if path != root and root not in path.parents:
        raise PermissionError(f"{rel!r} is outside the workspace")
    if ".git" in path.relative_to(root).parts:
        raise PermissionError("the workspace's .git is managed by the loop")
    return path


def _share(path: Path, root: Path) -> None:
    """Files written by the loop must stay writable by the sandbox's non-root user."""
    for p in [path, *path.parents]:
        if p == root or root not in p.parents:
            break
        os.chmod(p, 0o777 if p.is_dir() else 0o666)


def list_files(workspace: Path, rel: str = ".") -> str:
    base = _resolve(workspace, rel)
    if not base.exists():
        raise FileNotFoundError(f"{rel} does not exist")
    names = []
    for path in sorted(base.rglob("*")):
        parts = path.relative_to(workspace.resolve()).parts
        if ".git" in parts or "__pycache__" in parts or path.is_dir():
            continue
        names.append(f"{'/'.join(parts)}  ({path.stat().st_size} B)")
        if len(names) >= MAX_LIST:
            names.append(f"[... more than {MAX_LIST} files]")
            break
    return "\n".join(names) or "(no files)"


def read_file(workspace: Path, rel: str, start: int | None = None, end: int | None = None) -> str:
    lines = _resolve(workspace, rel).read_text(encoding="utf-8", errors="replace").splitlines()
    lo, hi = (start or 1), (end or len(lines))
    return "\n".join(f"{i:5d}  {line}" for i, line in enumerate(lines[lo - 1:hi], start=lo)) or "(empty file)"


def write_file(workspace: Path, rel: str, content: str) -> str:
    path = _resolve(workspace, rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    _share(path, workspace.resolve())
    return f"wrote {rel} ({len(content)} chars, {content.count(chr(10)) + 1} lines)"


def edit_file(workspace: Path, rel: str, old: str, new: str) -> str:
    path = _resolve(workspace, rel)
    text = path.read_text(encoding="utf-8")
    count = text.count(old)
    if count != 1:
        raise ValueError(f"`old` occurs {count} times in {rel}; it must occur exactly once")
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return f"edited {rel}"


def format_exec(result: ExecResult, limit: int) -> str:
    head = f"exit code {result.exit_code} ({result.reason}, {result.duration_s:.1f} s)"
    if result.reason == "timeout":
        head += " - the command was killed at its time limit"
    elif result.reason == "oom":
        head += " - killed: out of memory"
    parts = [head]
    if result.stdout:
        parts.append("stdout:\n" + clip(result.stdout, limit))
    if result.stderr:
        parts.append("stderr:\n" + clip(result.stderr, limit))
    return "\n".join(parts)


def execute(action: Action, workspace: Path, sandbox: Callable[[], Sandbox], exec_timeout_s: float,
            limit: int) -> tuple[Observation, ExecResult | None]:
    """Carry out one action; returns the observation and, for `run`, the raw exec result."""
    args = action.args
    if action.tool not in TOOL_NAMES:
        return Observation(f"unknown tool {action.tool!r}; tools: {', '.join(sorted(TOOL_NAMES))}", False), None
    try:
        if action.tool == "run":
            command = str(args["command"])
            timeout = float(args.get("timeout_s") or exec_timeout_s)
            result = sandbox().exec(command, timeout_s=min(timeout, exec_timeout_s))
            return Observation(format_exec(result, limit), result.ok), result
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
