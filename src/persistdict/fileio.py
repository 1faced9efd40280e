"""Whole-file writes that are atomic and durable, and the cleanup of their leftovers.

Every snapshot backend writes through :func:`atomic_write`, so at every instant the target on
disk is either the whole old version or the whole new one, and once the call returns the new
version survives a killed process and a crashed OS.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import sys
from pathlib import Path

__all__ = [
    "TEMP_MARKER",
    "atomic_write",
    "fsync_directory",
    "fsync_file",
    "remove_stale_temps",
    "temp_name_pattern",
]

#: Every temp file we create is named ``.<target name>.persistdict-<16 hex>.tmp``; nothing
#: else makes such names, so removing one after a crash can't destroy a user's file.
TEMP_MARKER = ".persistdict-"


def temp_name_pattern(target_name: str) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(target_name)}{re.escape(TEMP_MARKER)}[0-9a-f]{{16}}\.tmp\Z")


def fsync_file(fd: int) -> None:
    """Flush a file's data to stable storage.

    On macOS ``fsync`` only reaches the drive's cache; ``F_FULLFSYNC`` asks the drive to
    write it out, which is what survives a power cut.
    """
    if sys.platform == "darwin":
        import fcntl

        try:
            fcntl.fcntl(fd, fcntl.F_FULLFSYNC)
            return
        except OSError:  # not supported on this file system: fall back to plain fsync
            pass
    os.fsync(fd)


def fsync_directory(folder: str | os.PathLike[str]) -> None:
    """Make a rename inside ``folder`` durable (POSIX). Windows has no directory handles to
    fsync; there ``os.replace`` uses MoveFileEx with REPLACE_EXISTING, and NTFS journals it."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fsync_file(fd)
    finally:
        os.close(fd)


def _resolve(path: str | os.PathLike[str]) -> Path:
    # Writing through a symlink must replace the file it points at, not the link itself.
    return Path(os.path.realpath(path))


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int | None = None) -> None:
    """Replace the file at ``path`` with ``data``, atomically and durably.

    The data goes to a temp file created exclusively in the same folder, is fsynced, renamed
    over the target with ``os.replace``, and then the folder is fsynced so the rename itself
    is on disk. An existing target keeps its permission bits; a new one gets ``mode``
    (default ``0o666``) less the umask, as ``dbm.open`` does. On any error the target is
    untouched, the temp file is removed, and the original exception propagates.
    """
    target = _resolve(path)
    folder = target.parent
    try:
        keep_mode: int | None = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        keep_mode = None
    create_mode = 0o666 if mode is None else mode
    while True:
        tmp = folder / f".{target.name}{TEMP_MARKER}{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, create_mode)
            break
        except FileExistsError:  # pragma: no cover - 64 random bits collided
            continue
    try:
        try:
            if keep_mode is not None:
                os.fchmod(fd, keep_mode) if hasattr(os, "fchmod") else os.chmod(tmp, keep_mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            fsync_file(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_directory(folder)


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Delete temp files a crashed write left beside ``path``; return what was removed.

    Call it only while holding the write lock, so no live writer's temp file is removed.
    """
    target = _resolve(path)
    pattern = temp_name_pattern(target.name)
    removed: list[Path] = []
    try:
        names = os.listdir(target.parent)
    except OSError:
        return removed
    for name in names:
        if pattern.match(name):
            stale = target.parent / name
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
                removed.append(stale)
    return removed
