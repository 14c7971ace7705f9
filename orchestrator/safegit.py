"""The one way the host runs git: on a run's git directory, which no sandbox can reach, never on a work tree.

A run's repository is a bare git directory (`runs/<id>/git/`) outside the sandbox's bind mount. Host-side git
never gets a work tree: staging reads the workspace itself (sandboxes.hostfs, no links followed) and writes
objects (orchestrator/workspace.py), so no `.gitattributes`, `.gitmodules`, nested `.git` or anything else in
the sandbox-written tree is ever read by git. On top of that, every call:
- ignores system and global config (GIT_CONFIG_NOSYSTEM, GIT_CONFIG_GLOBAL=/dev/null, GIT_ATTR_NOSYSTEM);
- disables hooks, fsmonitor, pagers, external diff and textconv, whatever the repository's config says;
- runs with a minimal environment: no host secret (M3LAB_API_KEY...), no inherited GIT_* variable, HOME an empty
  directory, a fixed PATH.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

GIT = "git"
SAFE_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.pager=cat",
    "core.attributesFile=/dev/null",
    "attr.tree=4b825dc642cb6eb9a060e54bf8d69288fbee4904",  # git >= 2.42 reads a bare repo's HEAD attributes: the empty tree
    "core.askPass=",
    "core.editor=false",
    "credential.helper=",
    "core.bigFileThreshold=16m",  # diffs show larger blobs as binary: git never loads a sandbox-sized file whole
    "gc.auto=0",
    "maintenance.auto=false",
    "protocol.allow=never",
    "advice.detachedHead=false",
)
"""Given with -c, so they win over anything in the repository's config."""
DIFF_FLAGS = ("--no-ext-diff", "--no-textconv", "--no-color")
"""For every command that prints a patch."""
AUTHOR = ("m3lab", "m3lab@localhost")


class GitFailed(RuntimeError):
    """A git command exited non-zero (its stderr is in the message)."""


@lru_cache(maxsize=1)
def _empty_home() -> str:
    """An empty, private HOME for git (it must not read the host user's files)."""
    return tempfile.mkdtemp(prefix="m3lab-git-home-")


def clean_env() -> dict[str, str]:
    """The whole environment of a host-side git: nothing inherited from the host process."""
    name, email = AUTHOR
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": _empty_home(),
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_OPTIONAL_LOCKS": "0",
        "GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email,
    }


def _argv(git_dir: Path, args: Sequence[str]) -> list[str]:
    argv = [GIT, f"--git-dir={git_dir}"]
    for item in SAFE_CONFIG:
        argv += ["-c", item]
    return [*argv, *args]


def git(git_dir: Path, *args: str, input: bytes | None = None, env: dict[str, str] | None = None,
        stdout: int | None = None) -> bytes:
    """Run `git --git-dir=<git_dir> <args>` safely; returns stdout (written to the fd `stdout` instead when given),
    raises GitFailed on a non-zero exit."""
    proc = subprocess.run(_argv(git_dir, args), input=input, stdout=subprocess.PIPE if stdout is None else stdout,
                          stderr=subprocess.PIPE, cwd=str(git_dir), env={**clean_env(), **(env or {})},
                          stdin=None if input is not None else subprocess.DEVNULL)
    if proc.returncode != 0:
        raise GitFailed(f"git {' '.join(args[:3])} failed ({proc.returncode}): "
                        f"{proc.stderr.decode(errors='replace').strip()[:500]}")
    return proc.stdout or b""


def git_text(git_dir: Path, *args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> str:
    return git(git_dir, *args, input=input, env=env).decode("utf-8", errors="replace")


def git_head(git_dir: Path, *args: str, max_bytes: int) -> tuple[bytes, bool]:
    """The first `max_bytes` of a command's output and whether it was cut there (git is stopped at the cut): for
    output whose size the sandbox decides (patches), which is never read whole."""
    with tempfile.TemporaryFile() as err, subprocess.Popen(
            _argv(git_dir, args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, cwd=str(git_dir),
            env=clean_env()) as proc:
        assert proc.stdout is not None
        out = proc.stdout.read(max_bytes + 1)
        cut = len(out) > max_bytes
        if cut:
            proc.kill()
        code = proc.wait()
        if code != 0 and not cut:
            err.seek(0)
            raise GitFailed(f"git {' '.join(args[:3])} failed ({code}): "
                            f"{err.read(4000).decode(errors='replace').strip()[:500]}")
    return out[:max_bytes], cut


def init_bare(git_dir: Path) -> None:
    """A new bare repository only the host's user can read (mode 0700)."""
    git_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(git_dir, 0o700)
    proc = subprocess.run([GIT, "init", "--bare", "-q", "-b", "main", str(git_dir)], capture_output=True,
                          env=clean_env(), stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise GitFailed(f"git init failed: {proc.stderr.decode(errors='replace').strip()}")


def patch_args(extra: Sequence[str] = ()) -> list[str]:
    return [*DIFF_FLAGS, *extra]
