"""Host-side access to trees a sandbox wrote: never follow a link, never leave the tree.

A sandbox can put a symbolic link (or swap a directory for one) anywhere in its workspace, at any moment. Every
host step that reads, writes or measures such a tree goes through here: paths are opened one component at a time
from a root the host made, each with O_NOFOLLOW, so a link is refused instead of followed, whatever it points at
and however it was swapped in. Only regular files are read.
"""
from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_DEPTH = 128
"""Folders nested deeper than this are refused (walks raise UnsafePath): a sandbox can nest thousands of folders
(one `mkdir d; cd d` at a time), past Python's recursion limit and the host's open-file limit, and a walk that
crashed or skipped them would leave the quota unmeasured. No real project nests this deep."""
ENTRY_BYTES = 4096
"""What every entry of a tree costs at least in `disk_usage`: an inode and a block. Empty files, folders and
links hold no bytes but use the host's inodes; counted at zero, millions of them would pass the quota."""
_GONE = (errno.ENOENT, errno.ELOOP, errno.ENOTDIR)
"""Why a folder seen by a walk may fail to open: removed, or swapped for a link or a file since."""


class UnsafePath(OSError):
    """A path of a sandbox-written tree is a link, not a regular file, or lies outside the tree."""


def parts_of(rel: str | PurePosixPath) -> tuple[str, ...]:
    """The components of a tree-relative path; UnsafePath for absolute paths and `..`."""
    path = PurePosixPath(rel)
    if path.is_absolute() or ".." in path.parts:
        raise UnsafePath(f"{str(rel)!r} is not a path inside the tree")
    return tuple(p for p in path.parts if p != ".")


def _refused(rel: str, exc: OSError) -> UnsafePath:
    if exc.errno in (errno.ELOOP, errno.EMLINK):
        return UnsafePath(f"{rel} is (or passes through) a symbolic link; links are not followed")
    if exc.errno == errno.ENOTDIR:
        return UnsafePath(f"{rel}: a part of it is a file or a symbolic link, not a directory")
    return UnsafePath(f"{rel}: {exc.strerror or exc}")


def open_dir(root: Path, parts: tuple[str, ...], create: bool = False) -> int:
    """A directory fd of root/parts, reached without following any link (made when `create`)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            made = False
            if create:
                try:
                    os.mkdir(part, 0o777, dir_fd=fd)
                    made = True
                except FileExistsError:
                    pass
            nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
            if made:
                os.fchmod(fd, 0o777)  # past the umask: the sandbox's user writes there too
    except OSError as exc:
        os.close(fd)
        if isinstance(exc, FileNotFoundError):
            raise
        raise _refused("/".join(parts), exc) from None
    return fd


def open_file(root: Path, rel: str | PurePosixPath, flags: int = os.O_RDONLY, mode: int = 0o666,
              create_parents: bool = False) -> int:
    """An fd of the file root/rel, opened with O_NOFOLLOW on every component."""
    parts = parts_of(rel)
    if not parts:
        raise UnsafePath("an empty path names no file")
    dfd = open_dir(root, parts[:-1], create=create_parents)
    try:
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise _refused(str(rel), exc) from None
    finally:
        os.close(dfd)


def lstat(root: Path, rel: str | PurePosixPath) -> os.stat_result:
    """lstat of root/rel, its parent directories reached without following links."""
    parts = parts_of(rel)
    if not parts:
        return os.lstat(root)
    dfd = open_dir(root, parts[:-1])
    try:
        return os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
    finally:
        os.close(dfd)


def open_regular(root: Path, rel: str | PurePosixPath) -> int:
    """A read-only fd of the regular file root/rel; UnsafePath for links and special files (a fifo does not block)."""
    fd = open_file(root, rel, os.O_RDONLY | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePath(f"{rel} is not a regular file")
    return fd


def read_bytes(root: Path, rel: str | PurePosixPath, limit: int | None = None) -> bytes:
    """The bytes of the regular file root/rel (at most `limit`); UnsafePath for links and special files."""
    fd = open_regular(root, rel)
    try:
        chunks, size = [], 0
        while limit is None or size < limit:
            chunk = os.read(fd, 1 << 20 if limit is None else min(1 << 20, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_bytes(root: Path, rel: str | PurePosixPath, data: bytes, mode: int = 0o666) -> None:
    """Create or replace the regular file root/rel; a link at that path (or above it) is refused."""
    fd = open_file(root, rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode, create_parents=True)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePath(f"{rel} is not a regular file")
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def is_regular(root: Path, rel: str | PurePosixPath) -> bool:
    """True when root/rel is a regular file reached without links."""
    try:
        return stat.S_ISREG(lstat(root, rel).st_mode)
    except OSError:
        return False


def listdir(root: Path, rel: str = ".") -> list[tuple[str, os.stat_result]]:
    """(name, lstat) of the entries of one directory, sorted by name; links are listed, not followed."""
    fd = open_dir(root, parts_of(rel))
    try:
        with os.scandir(fd) as it:
            names = sorted(entry.name for entry in it)
        found = []
        for name in names:
            try:
                found.append((name, os.stat(name, dir_fd=fd, follow_symlinks=False)))
            except FileNotFoundError:
                continue
        return found
    finally:
        os.close(fd)


def walk(root: Path, rel: str = ".", skip_dirs: frozenset[str] = frozenset()
         ) -> Iterator[tuple[str, os.stat_result]]:
    """(path relative to root/rel, lstat) of everything under root/rel, depth first, sorted by name; directories
    are entered through O_NOFOLLOW fds, so a directory swapped for a link is never entered. UnsafePath for a
    folder nested deeper than MAX_DEPTH or one that cannot be read: the tree's content is then unknown."""
    fd = open_dir(root, parts_of(rel))
    try:
        yield from _walk(fd, "", skip_dirs, 1)
    finally:
        os.close(fd)


def _walk(dfd: int, prefix: str, skip_dirs: frozenset[str], depth: int
          ) -> Iterator[tuple[str, os.stat_result]]:
    with os.scandir(dfd) as it:
        names = sorted(entry.name for entry in it)
    for name in names:
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed while we walked
        rel = f"{prefix}{name}"
        yield rel, st
        if stat.S_ISDIR(st.st_mode) and name not in skip_dirs:
            if depth >= MAX_DEPTH:
                raise UnsafePath(f"a folder under {rel.split('/')[0]!r} is nested more than {MAX_DEPTH} deep; not read")
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=dfd)
            except OSError as exc:
                if exc.errno in _GONE:
                    continue  # swapped for a link or removed since the stat: not entered
                raise UnsafePath(f"{rel} cannot be read ({exc.strerror}; permissions changed by its writer?)") from None
            try:
                yield from _walk(sub, rel + "/", skip_dirs, depth + 1)
            finally:
                os.close(sub)


def disk_usage(root: Path) -> int:
    """Bytes a tree holds: per entry the larger of its length, its allocated blocks and ENTRY_BYTES (sparse files
    count at their length, since copying or staging them materialises it; empty entries at an inode and a
    block). Links are counted, never followed. UnsafePath when part of the tree cannot be read or is nested
    past MAX_DEPTH (its size is unknown)."""
    total = 0
    for _, st in walk(root):
        total += max(st.st_size, st.st_blocks * 512, ENTRY_BYTES)
    return total


def remove_tree(path: Path) -> None:
    """Delete a folder a sandbox wrote, however deep it nests (shutil.rmtree recurses once per level and fails
    past Python's recursion limit). Every folder met is first moved into one holding folder made here, so each
    step works one level down from it: no recursion, three open fds at most. Links are removed, never followed."""
    try:
        top = os.open(path, _DIR_FLAGS)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        os.unlink(path)  # a link or a file where the folder was
        return
    try:
        hold_name = _holding_folder(top)
        hold = os.open(hold_name, _DIR_FLAGS, dir_fd=top)
        try:
            pending = [_move(top, name, hold, i) for i, name in enumerate(_clear(top, skip=hold_name))]
            count = len(pending)
            while pending:
                name = pending.pop()
                fd = os.open(name, _DIR_FLAGS, dir_fd=hold)
                try:
                    for sub in _clear(fd):
                        pending.append(_move(fd, sub, hold, count))
                        count += 1
                finally:
                    os.close(fd)
                os.rmdir(name, dir_fd=hold)
        finally:
            os.close(hold)
        os.rmdir(hold_name, dir_fd=top)
    finally:
        os.close(top)
    os.rmdir(path)


def _holding_folder(top: int) -> str:
    while True:
        name = f".m3lab-rm-{secrets.token_hex(8)}"
        try:
            os.mkdir(name, 0o700, dir_fd=top)
            return name
        except FileExistsError:
            continue


def _clear(fd: int, skip: str = "") -> list[str]:
    """Unlink every entry of folder `fd` that is not a folder; the names of its folders (but `skip`)."""
    with os.scandir(fd) as it:
        entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
    for name, is_dir in entries:
        if not is_dir:
            os.unlink(name, dir_fd=fd)
    return [name for name, is_dir in entries if is_dir and name != skip]


def _move(src: int, name: str, hold: int, number: int) -> str:
    """Move folder `name` of `src` into the holding folder (where only this module makes names)."""
    os.rename(name, str(number), src_dir_fd=src, dst_dir_fd=hold)
    return str(number)
