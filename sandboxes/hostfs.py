"""Host-side access to trees a sandbox wrote: never follow a link, never leave the tree.

A sandbox can put a symbolic link (or swap a directory for one) anywhere in its workspace, at any moment. Every
host step that reads, writes or measures such a tree goes through here: paths are opened one component at a time
from a root the host made, each with O_NOFOLLOW, so a link is refused instead of followed, whatever it points at
and however it was swapped in. Only regular files are read.
"""
from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


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


def read_bytes(root: Path, rel: str | PurePosixPath, limit: int | None = None) -> bytes:
    """The bytes of the regular file root/rel (at most `limit`); UnsafePath for links and special files."""
    fd = open_file(root, rel, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePath(f"{rel} is not a regular file")
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
    are entered through O_NOFOLLOW fds, so a directory swapped for a link is never entered."""
    fd = open_dir(root, parts_of(rel))
    try:
        yield from _walk(fd, "", skip_dirs)
    finally:
        os.close(fd)


def _walk(dfd: int, prefix: str, skip_dirs: frozenset[str]) -> Iterator[tuple[str, os.stat_result]]:
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
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=dfd)
            except PermissionError:
                raise UnsafePath(f"{rel} cannot be read (permissions changed by its writer?)") from None
            except OSError:
                continue  # swapped for a link or removed since the stat: not entered
            try:
                yield from _walk(sub, rel + "/", skip_dirs)
            finally:
                os.close(sub)


def disk_usage(root: Path) -> int:
    """Bytes a tree holds: per entry the larger of its length and its allocated blocks (sparse files count
    at their length, since copying or staging them materialises it). Links are counted, never followed.
    UnsafePath when part of the tree cannot be read (its size is unknown)."""
    total = 0
    for _, st in walk(root):
        total += max(st.st_size, st.st_blocks * 512)
    return total
