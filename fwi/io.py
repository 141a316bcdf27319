"""Crash-safe file writes: every file the project writes appears whole or not at all.

A write goes to a temporary file next to its target, named ``.<target>.<host>-<pid>.<random>.tmp``; the
temporary file is flushed to disk (``fsync``), renamed onto the target (atomic on POSIX) and the directory
entry is flushed too, so neither a crash nor a power cut leaves a half-written file under the target's name.
Files are created with mode ``0o666`` minus the umask, like any ``open()``. Temporaries left by a killed
process (same host, pid no longer running) are removed the first time this process writes into their folder.
A full disk (or quota) is a one-line :class:`~fwi.errors.FwiError` and the target is left as it was.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import socket
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from fwi.errors import FwiError

HOST = f"{zlib.crc32(socket.gethostname().encode()):08x}"
"""This machine in temporary file names, so a process never removes another machine's temporaries on a
shared file system."""

_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)\.[0-9a-f]+\.tmp$")
_cleaned: set[Path] = set()
"""Folders already cleaned of stale temporaries by this process (each is scanned once)."""

_FULL = (errno.ENOSPC, errno.EDQUOT)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a process of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files in ``folder`` left by dead processes of this machine; returns them."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TMP.match(entry.name)
        if m and m["host"] == HOST and not pid_alive(int(m["pid"])):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass  # gone already, or not ours to remove: harmless
    return removed


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it wraps) says the disk or the quota is full."""
    for _ in range(10):  # the exception, then what it was raised from or during
        if exc is None:
            return False
        if isinstance(exc, OSError) and (exc.errno in _FULL or "os error 28" in str(exc)):
            return True  # polars reports Rust's io::Error without an errno
        exc = exc.__cause__ or exc.__context__
    return False


def _fsync(path: str | os.PathLike, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_temporary(path: Path) -> Path:
    """A new empty file next to ``path``, mode 0o666 & ~umask (``os.open`` applies the umask)."""
    while True:
        tmp = path.with_name(f".{path.name}.{HOST}-{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is synced and renamed onto ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched; a full disk raises a
    one-line :class:`FwiError` naming ``path``.
    """
    path = Path(path)
    folder = path.parent.absolute()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if folder not in _cleaned:
            remove_stale_temporaries(folder)
            _cleaned.add(folder)
        tmp = _create_temporary(path)
    except OSError as exc:
        if is_disk_full(exc):
            raise FwiError(f"no space left on the device of {folder}: free some space and rerun") from None
        raise
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(folder, directory=True)
    except BaseException as exc:
        if is_disk_full(exc):
            raise FwiError(f"no space left on the device of {path} while writing it (nothing was written; "
                           "free some space and rerun)") from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def exclusive(lock: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock`` (created, holding ``pid@host``) while the block runs.

    Another holder makes this a one-line :class:`FwiError` naming ``what`` and the holder's pid. The lock is
    the kernel's (``flock``): it ends with the process that holds it, however that process ends, so the lock
    file of a killed run is simply taken over by the next one.
    """
    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise FwiError(f"{what} is in use by process {holder} (lock file {lock}); wait for it to finish, or "
                           "use another name") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}@{socket.gethostname()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        write(tmp)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """``np.save`` to ``path`` atomically (no half-written .npy after a crash)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    atomic_write(path, write)


def save_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
