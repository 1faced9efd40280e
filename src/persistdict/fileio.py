"""Whole-file writes that are atomic and durable, and the cleanup of their leftovers.

Every snapshot backend writes through ``atomic_write``, so at every instant the target on
disk is either the whole old version or the whole new one, and once the call returns the new
version survives a killed process and a crashed OS.

The order of one write, and why each step is there:

1. the new bytes go to a temp file created exclusively (``O_EXCL``) in the target's folder,
   so the rename below stays inside one file system and never follows a planted file;
2. the temp file is fsynced: without it a crash after the rename can leave an empty or
   partial file under the target's name (the classic delayed-allocation data loss);
3. optionally the current target is hard-linked as the previous generation (no data is
   copied; see ``previous_path``);
4. ``os.replace`` swaps the names atomically;
5. the folder is fsynced, so the rename itself is on disk when the call returns.

Platforms: on macOS ``fsync`` stops at the drive's cache, so ``fsync_file`` asks for
``F_FULLFSYNC``. On Windows the swap is ``MoveFileExW`` with ``MOVEFILE_REPLACE_EXISTING |
MOVEFILE_WRITE_THROUGH`` (``os.replace`` omits write-through), ``os.fsync`` is
``FlushFileBuffers``, and folders can't be fsynced (NTFS journals the rename instead). Windows
refuses the swap while another process has the target open without delete sharing (a reader,
an antivirus scan); the write then raises ``PermissionError`` with nothing changed, and a retry
succeeds once the other handle is closed.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import secrets
import stat
import sys
import time
from pathlib import Path

__all__ = [
    "PREVIOUS_SUFFIX",
    "TEMP_MARKER",
    "atomic_write",
    "fsync_directory",
    "fsync_file",
    "previous_path",
    "remove_stale_temps",
    "replace_durably",
    "restore_previous",
    "temp_name_pattern",
]

#: Every temp file we create is named ``.<target name>.persistdict-<16 hex>.tmp``; nothing
#: else makes such names, so removing one after a crash can't destroy a user's file.
TEMP_MARKER = ".persistdict-"
#: The previous generation of ``state.json`` is kept as ``.state.json.persistdict-prev``.
PREVIOUS_SUFFIX = TEMP_MARKER + "prev"

# A folder fsync that the file system does not support (some FUSE and network mounts) says
# nothing about our data; real I/O errors (EIO, ENOSPC) still propagate.
_UNSUPPORTED = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF}


def temp_name_pattern(target_name: str) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(target_name)}{re.escape(TEMP_MARKER)}[0-9a-f]{{16}}\.tmp\Z")


def _temp_path(target: Path) -> Path:
    return target.parent / f".{target.name}{TEMP_MARKER}{secrets.token_hex(8)}.tmp"


def previous_path(path: str | os.PathLike[str]) -> Path:
    """Where the generation before the current one of ``path`` is kept (through symlinks)."""
    target = _resolve(path)
    return target.parent / f".{target.name}{PREVIOUS_SUFFIX}"


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
    """Make a rename inside ``folder`` durable (POSIX; a no-op on Windows, see the module)."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fsync_file(fd)
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED:
            raise
    finally:
        os.close(fd)


if sys.platform == "win32":
    import ctypes
    from ctypes import wintypes

    _MOVEFILE_REPLACE_EXISTING = 0x1
    _MOVEFILE_WRITE_THROUGH = 0x8
    _kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    _move_file_ex = _kernel32.MoveFileExW
    _move_file_ex.argtypes = (wintypes.LPCWSTR, wintypes.LPCWSTR, wintypes.DWORD)
    _move_file_ex.restype = wintypes.BOOL

    def replace_durably(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        """``os.replace`` that returns only once the move is on disk."""
        flags = _MOVEFILE_REPLACE_EXISTING | _MOVEFILE_WRITE_THROUGH
        if not _move_file_ex(os.fspath(src), os.fspath(dst), flags):
            code = ctypes.get_last_error()
            raise ctypes.WinError(code)

else:

    def replace_durably(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        """``os.replace``; the caller fsyncs the folder to make it durable (POSIX)."""
        os.replace(src, dst)


def _resolve(path: str | os.PathLike[str]) -> Path:
    # Writing through a symlink must replace the file it points at, not the link itself.
    return Path(os.path.realpath(path))


def _close_quietly(fd: int) -> None:
    # Used only while another error is propagating: that error is the one to report.
    with contextlib.suppress(OSError):
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written == 0:  # pragma: no cover - regular files never return 0 for a non-empty write
            raise OSError(errno.EIO, "write returned 0 bytes")
        view = view[written:]


def _link_previous(target: Path, current: os.stat_result) -> None:
    """Hard-link the current ``target`` as its previous generation; best effort.

    The link goes to a fresh temp name first and is then renamed over the old previous
    generation, so a crash leaves either the old or the new one, never neither. File systems
    without hard links (FAT, some network mounts) keep no previous generation; the write goes
    on, since the previous generation is a convenience, not part of the promise.
    """
    with contextlib.suppress(OSError):
        kept = os.stat(previous_path(target))
        if (kept.st_ino, kept.st_dev) == (current.st_ino, current.st_dev):
            # Already linked by a write that then failed: renaming a second link onto it would
            # do nothing (POSIX) and leave that link behind.
            return
    link = _temp_path(target)
    try:
        os.link(target, link)
    except OSError:
        return
    try:
        os.replace(link, previous_path(target))
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(link)


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes,
    mode: int | None = None,
    *,
    keep_previous: bool = False,
) -> None:
    """Replace the file at ``path`` with ``data``, atomically and durably.

    The steps and their reasons are in the module docstring. An existing target keeps its
    permission bits (and, where allowed, owner and group); a new one gets ``mode`` (default
    ``0o666``) less the umask, as ``dbm.open`` does. With ``keep_previous`` an existing target
    is first hard-linked as ``previous_path``.

    Raises:
        OSError: the original error (``ENOSPC``, ``EIO``, ``EPERM``...). If it happened before
            the rename, the target is byte-identical to before; if the final folder fsync
            failed, the target already holds the whole new version but its durability is not
            assured. Either way no temp file is left behind.
    """
    target = _resolve(path)
    folder = target.parent
    try:
        old: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        old = None
    create_mode = 0o666 if mode is None else mode
    while True:
        tmp = _temp_path(target)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, create_mode)
            break
        except FileExistsError:  # pragma: no cover - 64 random bits collided
            continue
    try:
        try:
            if old is not None:
                _copy_owner_and_mode(fd, tmp, old)
            _write_all(fd, data)
            fsync_file(fd)
        except BaseException:
            _close_quietly(fd)
            raise
        os.close(fd)  # may report a deferred write error (NFS): still before the rename
        if keep_previous and old is not None:
            _link_previous(target, old)
        replace_durably(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_directory(folder)


def _copy_owner_and_mode(fd: int, tmp: Path, old: os.stat_result) -> None:
    new = os.fstat(fd)
    if hasattr(os, "fchown") and (old.st_uid, old.st_gid) != (new.st_uid, new.st_gid):
        # Only root (or a member of the group) may do this; otherwise the file keeps ours.
        with contextlib.suppress(OSError):
            os.fchown(fd, old.st_uid, old.st_gid)
    if hasattr(os, "fchmod"):
        os.fchmod(fd, stat.S_IMODE(old.st_mode))
    else:  # pragma: no cover - Windows
        os.chmod(tmp, stat.S_IMODE(old.st_mode))


def restore_previous(path: str | os.PathLike[str]) -> Path:
    """Put the previous generation back in place of a damaged ``path``; return where the
    damaged file was kept.

    The damaged file is hard-linked as ``<name>.corrupt-<UTC time>`` first, so nothing is
    destroyed; then the previous generation is renamed over the target (atomically, and
    durably once the folder is fsynced). A crash in between leaves the damaged target in
    place and the call can simply be repeated.

    Raises:
        FileNotFoundError: there is no previous generation.
    """
    target = _resolve(path)
    previous = previous_path(target)
    if not previous.exists():
        raise FileNotFoundError(errno.ENOENT, "no previous generation", os.fspath(previous))
    stem = f"{target.name}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    for n in itertools.count():
        kept = target.parent / (stem if n == 0 else f"{stem}-{n}")
        try:
            os.link(target, kept)
            break
        except FileExistsError:
            continue
    replace_durably(previous, target)
    fsync_directory(target.parent)
    return kept


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
