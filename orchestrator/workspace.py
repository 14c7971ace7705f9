"""The producer's workspace and its history: one commit per iteration, fresh exports for the verifier.

The history lives in the run's bare git directory (`runs/<id>/git/`), which the sandbox never sees; the
workspace (`runs/<id>/workspace/`) is only a folder of bytes the sandbox wrote. Staging reads that folder with
sandboxes.hostfs (no link followed) and writes git objects itself, so git never opens the work tree and nothing in
it (.gitattributes, .gitmodules, a nested .git, hooks...) can configure or run anything on the host. Commits,
diffs and exports go through orchestrator.safegit on the git directory alone.
"""
from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from orchestrator.safegit import GitFailed, git, git_head, git_text, init_bare, patch_args
from sandboxes import hostfs

SYMLINK_MODE = "120000"
SKIP_DIRS = frozenset({"__pycache__", ".pytest_cache"})
"""Caches no check needs; leaving them out keeps trees (and the stuck detector) stable."""


class LegacyRun(RuntimeError):
    """A run made before the git directory moved out of the sandbox: its history is not read."""


@dataclass
class Export:
    """A tree written out to a host folder, with what was left out and why (findings for the producer)."""

    path: Path
    dropped: list[str] = field(default_factory=list)


def require_git_dir(git_dir: Path) -> Path:
    """The run's git directory, or a clear error for runs of the old layout (history inside the workspace)."""
    if (git_dir / "HEAD").is_file():
        return git_dir
    if (git_dir.parent / "workspace" / ".git").exists():
        raise LegacyRun(f"run {git_dir.parent.name} keeps its git history inside the sandbox-writable workspace "
                        "(made before M3 Lab moved it to runs/<id>/git/): it is not read, since the sandbox "
                        "could have written it; start a new run")
    raise LegacyRun(f"run {git_dir.parent.name} has no git history ({git_dir} is missing)")


def iteration_of(message: str) -> int | None:
    """The iteration number in a commit message `iteration N: ...`."""
    head = message.split(":", 1)[0]
    if head.startswith("iteration "):
        try:
            return int(head.split()[1])
        except (IndexError, ValueError):
            return None
    return None


def _write_object(git_dir: Path, kind: bytes, data: bytes) -> str:
    """Store a loose object (what `git hash-object -w` does, without a process or any filter)."""
    header = b"%s %d\0" % (kind, len(data))
    digest = hashlib.sha1(header)
    digest.update(data)
    sha = digest.hexdigest()
    path = git_dir / "objects" / sha[:2] / sha[2:]
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        tmp = path.parent / f".tmp-{os.getpid()}-{threading.get_ident()}-{sha[2:]}"  # islands stage at once
        packer = zlib.compressobj(1)
        tmp.write_bytes(packer.compress(header) + packer.compress(data) + packer.flush())
        os.chmod(tmp, 0o444)
        os.replace(tmp, path)
    return sha


def _store_blob(git_dir: Path, fd: int, size: int) -> str | None:
    """Store the file open at `fd` (`size` bytes) as a loose blob, read and compressed 1 MiB at a time: a file
    of any size costs no more memory than that. None when the file's length changed while it was read."""
    header = b"blob %d\0" % size
    digest = hashlib.sha1(header)
    packer = zlib.compressobj(1)
    tmp = git_dir / "objects" / f".tmp-{os.getpid()}-{threading.get_ident()}-blob"  # islands stage at once
    with open(tmp, "wb") as out:
        out.write(packer.compress(header))
        left = size
        while left:
            chunk = os.read(fd, min(1 << 20, left))
            if not chunk:
                break
            digest.update(chunk)
            out.write(packer.compress(chunk))
            left -= len(chunk)
        out.write(packer.flush())
    sha = digest.hexdigest()
    path = git_dir / "objects" / sha[:2] / sha[2:]
    changed = bool(left) or bool(os.read(fd, 1))  # shorter or longer than its stat said
    if changed or path.exists():
        tmp.unlink()
        return None if changed else sha
    path.parent.mkdir(exist_ok=True)
    os.chmod(tmp, 0o444)
    os.replace(tmp, path)
    return sha


def _is_git_name(name: str) -> bool:
    """Names git refuses in a tree (`.git` in any case, its NTFS short name): data git cannot hold."""
    lowered = name.lower().rstrip(". ")
    return lowered in (".git", "git~1")


_seen: dict[tuple[str, str], tuple[tuple[int, ...], str]] = {}
"""(git dir, path) -> (stat signature, blob id) of files staged before: like git's index, an unchanged file is
not read again. ctime cannot be set from user space, so a rewrite always changes the signature."""
RACY_S = 2.0


def _blob_of(git_dir: Path, root: Path, rel: str, st: os.stat_result) -> str | None:
    """The blob id of a regular file (None when it vanished or became a link meanwhile)."""
    key = (str(git_dir), rel)
    sig = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
    cached = _seen.get(key)
    if cached is not None and cached[0] == sig:
        return cached[1]
    try:
        fd = hostfs.open_regular(root, rel)
    except (hostfs.UnsafePath, FileNotFoundError):
        return None
    try:
        sha = _store_blob(git_dir, fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    if sha is None:
        return None
    if time.time() - st.st_ctime_ns / 1e9 > RACY_S:  # a file changed just now could change again unseen
        _seen[key] = (sig, sha)
    return sha


def _tree_entries(git_dir: Path, root: Path, parts: tuple[str, ...]) -> list[tuple[bytes, bytes, str]]:
    """(mode, name, sha) of one directory of the workspace, read without following links."""
    entries = []
    dfd = hostfs.open_dir(root, parts)
    try:
        with os.scandir(dfd) as it:
            names = sorted(e.name for e in it)
        for name in names:
            if _is_git_name(name) or name in SKIP_DIRS:
                continue
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            rel = "/".join((*parts, name))
            if stat.S_ISDIR(st.st_mode):
                if len(parts) + 1 >= hostfs.MAX_DEPTH:
                    continue  # nested past what the host reads: left out (the quota stops such a tree anyway)
                try:
                    sub = _tree_entries(git_dir, root, (*parts, name))
                except (hostfs.UnsafePath, FileNotFoundError):
                    continue  # swapped for a link while we read: left out
                if sub:
                    entries.append((b"40000", os.fsencode(name), _write_tree(git_dir, sub)))
            elif stat.S_ISLNK(st.st_mode):
                target = os.fsencode(os.readlink(name, dir_fd=dfd))
                entries.append((SYMLINK_MODE.encode(), os.fsencode(name), _write_object(git_dir, b"blob", target)))
            elif stat.S_ISREG(st.st_mode):
                sha = _blob_of(git_dir, root, rel, st)
                if sha is not None:
                    mode = b"100755" if st.st_mode & 0o111 else b"100644"
                    entries.append((mode, os.fsencode(name), sha))
            # fifos, sockets and devices are not content: left out
    finally:
        os.close(dfd)
    return entries


def _write_tree(git_dir: Path, entries: list[tuple[bytes, bytes, str]]) -> str:
    # git orders a tree's entries by name, a directory's name compared as if it ended with "/".
    ordered = sorted(entries, key=lambda e: e[1] + (b"/" if e[0] == b"40000" else b""))
    body = b"".join(mode + b" " + name + b"\0" + bytes.fromhex(sha) for mode, name, sha in ordered)
    return _write_object(git_dir, b"tree", body)


def stage_tree(git_dir: Path, workspace: Path) -> str:
    """The tree id of everything the producer left in the workspace: what the verifier checks, and what this
    iteration's commit will hold. Links are stored as links (data), never followed."""
    return _write_tree(require_git_dir(git_dir), _tree_entries(git_dir, Path(workspace), ()))


def _head(git_dir: Path) -> str | None:
    try:
        return git_text(git_dir, "rev-parse", "--verify", "-q", "HEAD^{commit}").strip() or None
    except GitFailed:
        return None


def _commit(git_dir: Path, tree: str, parent: str | None, message: str) -> str:
    args = ["commit-tree", tree, *(["-p", parent] if parent else []), "-m", message]
    sha = git_text(git_dir, *args).strip()
    git(git_dir, "update-ref", "HEAD", sha, *([parent] if parent else []))
    return sha


def init_repo(git_dir: Path, workspace: Path) -> str:
    """A new run's repository, with the starting files committed as iteration 0."""
    init_bare(git_dir)
    return _commit(git_dir, stage_tree(git_dir, workspace), None, "iteration 0: initial workspace")


def commit_tree(git_dir: Path, iteration: int, tree: str, summary: str) -> str:
    """This iteration's commit, with the verdict in its message (empty commits too, so history stays
    contiguous). Idempotent: if HEAD already is this iteration's commit, it is returned unchanged."""
    require_git_dir(git_dir)
    head = _head(git_dir)
    if head and iteration_of(_message(git_dir, head)) == iteration:
        return head
    return _commit(git_dir, tree, head, f"iteration {iteration}: {summary}")


def _message(git_dir: Path, sha: str) -> str:
    return git_text(git_dir, "log", "-1", "--format=%B", sha, "--")


def _safe_link(target: bytes) -> bool:
    """A link kept in an export: relative and only downwards, so it resolves inside the export whatever
    other links exist there."""
    path = PurePosixPath(os.fsdecode(target))
    return bool(target) and b"\0" not in target and not path.is_absolute() and ".." not in path.parts


def _ls_tree(git_dir: Path, tree: str) -> list[tuple[str, str, int, str]]:
    """(mode, sha, size, path) of every blob of a tree."""
    out = git(git_dir, "ls-tree", "-r", "-z", "--long", "--full-tree", tree)
    rows = []
    for record in out.split(b"\0"):
        if record:
            meta, path = record.split(b"\t", 1)
            mode, kind, sha, size = meta.decode().split()
            if kind == "blob":
                rows.append((mode, sha, int(size), os.fsdecode(path)))
    return rows


BATCH_BYTES = 256 << 20
"""Blob bytes read per `git cat-file --batch` call: an export of a large tree never holds it all in memory."""
STREAM_BYTES = 16 << 20
"""Blobs larger than this are written to their file straight from git, never held in memory."""


def _batch(git_dir: Path, shas: list[str]) -> dict[str, bytes]:
    out = git(git_dir, "cat-file", "--batch", input=("\n".join(shas) + "\n").encode())
    blobs, pos = {}, 0
    for sha in shas:
        end = out.index(b"\n", pos)
        _, _, size = out[pos:end].decode().split()
        start = end + 1
        blobs[sha] = out[start:start + int(size)]
        pos = start + int(size) + 1
    return blobs


def _blobs(git_dir: Path, sizes: dict[str, int]) -> Iterator[dict[str, bytes]]:
    """The contents of blobs (sha -> size), in batches of about BATCH_BYTES."""
    batch: list[str] = []
    total = 0
    for sha, size in sizes.items():
        if batch and total + size > BATCH_BYTES:
            yield _batch(git_dir, batch)
            batch, total = [], 0
        batch.append(sha)
        total += size
    if batch:
        yield _batch(git_dir, batch)


def export_tree(git_dir: Path, tree: str, dest: Path) -> Export:
    """A fresh copy of a tree, written from git objects. Links that are absolute or climb with `..` are
    dropped (noted in `dropped`): nothing in an export can lead a host step out of it."""
    require_git_dir(git_dir)
    if dest.exists() or dest.is_symlink():
        hostfs.remove_tree(dest)
    dest.mkdir(parents=True)
    rows = _ls_tree(git_dir, tree)
    result = Export(dest)
    small = {sha: size for mode, sha, size, _ in rows if size <= STREAM_BYTES}
    for blobs in _blobs(git_dir, small):
        for mode, sha, _, rel in rows:
            if sha in blobs:
                _export_one(dest, mode, rel, blobs[sha], result)
    for mode, sha, size, rel in rows:
        if size > STREAM_BYTES:
            _export_large(git_dir, dest, mode, sha, rel, result)
    return result


def _export_large(git_dir: Path, dest: Path, mode: str, sha: str, rel: str, result: Export) -> None:
    """Write one large blob into an export straight from `git cat-file` (a link this large is no link)."""
    if mode == SYMLINK_MODE:
        result.dropped.append(f"symbolic link {rel} was left out of the checked copy: its target is too long")
        return
    perms = 0o755 if mode == "100755" else 0o644
    fd = hostfs.open_file(dest, rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, perms, create_parents=True)
    try:
        os.fchmod(fd, perms)
        git(git_dir, "cat-file", "blob", sha, stdout=fd)
    finally:
        os.close(fd)


def _export_one(dest: Path, mode: str, rel: str, data: bytes, result: Export) -> None:
    """Write one tree entry into an export; a link only when it stays inside (else noted in `result`)."""
    if mode != SYMLINK_MODE:
        hostfs.write_bytes(dest, rel, data, 0o755 if mode == "100755" else 0o644)
    elif not _safe_link(data):
        result.dropped.append(f"symbolic link {rel} -> {os.fsdecode(data)!r} was left out of the checked copy: "
                              "links must be relative and stay inside the workspace")
    else:
        parent = hostfs.open_dir(dest, hostfs.parts_of(rel)[:-1], create=True)
        try:
            os.symlink(data, PurePosixPath(rel).name, dir_fd=parent)
        finally:
            os.close(parent)


def restore_tree(git_dir: Path, tree: str, workspace: Path) -> Export:
    """Put the workspace back to `tree` (a quota overrun rolls back to the last staged tree)."""
    staging = workspace.parent / f".{workspace.name}.restore"
    export = export_tree(git_dir, tree, staging)
    for child in list(workspace.iterdir()):
        if child.is_dir() and not child.is_symlink():
            hostfs.remove_tree(child)  # sandbox-written: nested however deep
        else:
            child.unlink()
    for child in list(staging.iterdir()):
        os.replace(child, workspace / child.name)
    staging.rmdir()
    share_tree(workspace)
    return Export(workspace, export.dropped)


MAX_PATCH_BYTES = 16 << 20
"""The most of a patch ever read: its size is the sandbox's to choose (up to the disk quota)."""


def diff_tree(git_dir: Path, tree: str, max_chars: int | None = None, base: str = "HEAD") -> str:
    """The staged change against the last commit, or `base` (an island's own last commit): what the verifier
    reviews."""
    return _patch(require_git_dir(git_dir), ["diff", *patch_args(["--stat", "--patch"]), base, tree, "--"], max_chars)


def _patch(git_dir: Path, args: list[str], max_chars: int | None) -> str:
    """A patch cut at `max_chars` (and at MAX_PATCH_BYTES whatever is asked), with the cut said at its end."""
    limit = MAX_PATCH_BYTES if max_chars is None else min(MAX_PATCH_BYTES, 4 * max_chars)
    data, cut = git_head(git_dir, *args, max_bytes=limit)
    text = data.decode("utf-8", errors="replace")
    if max_chars is not None and len(text) > max_chars:
        return text[:max_chars] + f"\n[... diff cut at {max_chars} of {'more than ' if cut else ''}{len(text)} chars]"
    if cut:
        return text + f"\n[... diff cut at {limit} bytes]"
    return text


def share_tree(root: Path) -> None:
    """Make a tree the host just wrote writable by the sandbox's non-root user (the loop runs as root; the
    code never does). Each entry is changed through its own fd, reached without following links: a path too
    long for one system call, or a link swapped in, is never a problem."""
    os.chmod(root, 0o777)
    for rel, st in hostfs.walk(root):
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            continue
        try:
            fd = hostfs.open_file(root, rel, os.O_RDONLY | os.O_NONBLOCK)
        except (hostfs.UnsafePath, FileNotFoundError):
            continue  # replaced since the walk saw it: left as it is
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
                os.fchmod(fd, 0o777 if stat.S_ISDIR(mode) else 0o666)
        finally:
            os.close(fd)


def commit_for_iteration(git_dir: Path, iteration: int) -> tuple[str, str] | None:
    """(sha, message) of the commit of one iteration, newest first along HEAD."""
    out = git_text(require_git_dir(git_dir), "log", "--first-parent", "-z", "--format=%H %B", "HEAD", "--")
    for record in out.split("\0"):
        sha, _, message = record.strip("\n").partition(" ")
        if sha and iteration_of(message) == iteration:
            return sha, message.strip()
    return None


def show_commit(git_dir: Path, sha: str, max_chars: int | None = None) -> tuple[str, str, str]:
    """(full sha, message, stat + patch against its parent, cut at `max_chars`) of a commit."""
    require_git_dir(git_dir)
    full = git_text(git_dir, "rev-parse", "--verify", "--end-of-options", f"{sha}^{{commit}}").strip()
    patch = _patch(git_dir, ["show", *patch_args(["--stat", "--patch", "--format="]), full, "--"], max_chars)
    return full, _message(git_dir, full).strip(), patch


def diff_for_iteration(git_dir: Path, iteration: int, max_chars: int | None = None) -> str:
    """The patch of one committed iteration against the previous commit."""
    found = commit_for_iteration(git_dir, iteration)
    if found is None:
        raise KeyError(f"no commit for iteration {iteration}")
    return show_commit(git_dir, found[0], max_chars)[2]
