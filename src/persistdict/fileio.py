"""Whole-file writes that are atomic and durable, and the cleanup of their leftovers.

Every snapshot backend writes through ``atomic_write``, so at every instant the target on
disk is either the whole old version or the whole new one, and once the call returns the new
version survives a killed process and a crashed OS.

The order of one write, and why each step is there:

1. the new bytes go to a temp file created exclusively (``O_EXCL | O_NOFOLLOW``) in the
   target's folder, so the rename below stays inside one file system and never follows a
   planted file. It is created with no more permission than the target's owner has on the
   target (a new target: its final mode) and only then given the target's owner, group and
   mode, so nobody can open it whom the target's mode would keep out, at any instant;
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

from persistdict.errors import ReadOnlyError

__all__ = [
    "PREVIOUS_SUFFIX",
    "TEMP_MARKER",
    "atomic_write",
    "check_side_file",
    "fsync_directory",
    "fsync_file",
    "give_owner_and_mode",
    "open_side_file",
    "previous_path",
    "read_previous",
    "refuse_read_only",
    "remove_stale_temps",
    "replace_durably",
    "resolve_data_path",
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


# O_NOFOLLOW and O_CLOEXEC are POSIX; Windows has neither flag (nor sticky folders).
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
# Linux's limit on symlinks followed while resolving one path (MAXSYMLINKS).
_MAX_LINKS = 40


def resolve_data_path(path: str | os.PathLike[str], *, create: bool = False) -> Path:
    """Where ``path`` really is, following symlinks as the OS would, except a planted one.

    Writing through a symlink must replace the file it points at, not the link itself, so
    every write goes to the resolved path. Resolving first, though, would bypass the
    kernel's own guard (Linux's ``fs.protected_symlinks``, off on some systems anyway): in a
    world-writable sticky folder such as /tmp, any user can plant a link at the name another
    user is about to open. So each link met on the way is checked by that guard's rule, and
    one in a sticky world-writable folder that belongs neither to us nor to the folder's
    owner is refused.

    With ``create`` (flags ``c`` and ``n``, which create a missing file), an existing file
    of such an owner in such a folder is refused too, as Linux's ``fs.protected_regular``
    refuses an ``O_CREAT`` open of it: another user may have made it in advance, readable
    by them, to receive what this program writes.

    Raises:
        PermissionError: such a planted link or file; the message names it and its owner.
        OSError: ``ELOOP``, more than 40 links in a row.
    """
    text = os.fspath(path)
    if os.name == "nt":  # pragma: no cover - no sticky folders; NTFS links are admin-made
        return Path(os.path.realpath(text))
    todo = os.path.join(os.getcwd(), text).split("/")
    todo.reverse()
    resolved = "/"
    links = 0
    missing = False  # past a name that does not exist nothing more can be a link
    while todo:
        part = todo.pop()
        if part in ("", "."):
            continue
        if part == "..":
            resolved = os.path.dirname(resolved)
            continue
        candidate = os.path.join(resolved, part)
        if not missing:
            try:
                st = os.lstat(candidate)
            except OSError:  # absent, or not ours to look at: the open will say which
                missing = True
            else:
                if stat.S_ISLNK(st.st_mode):
                    links += 1
                    if links > _MAX_LINKS:
                        raise OSError(errno.ELOOP, "too many levels of symbolic links", text)
                    _refuse_planted_link(candidate, st, text)
                    target = os.readlink(candidate)
                    if target.startswith("/"):
                        resolved = "/"
                    todo.extend(reversed(target.split("/")))
                    continue
        resolved = candidate
    if create and not missing:
        _refuse_planted_file(resolved, text)
    return Path(resolved)


def _shared_folder_stranger(folder: str, owner: int) -> bool:
    """Whether ``folder`` is sticky and world-writable and ``owner`` is neither us nor its
    owner: the kernel's test for a name someone else may have planted there."""
    shared = os.stat(folder)
    sticky_and_open = shared.st_mode & stat.S_ISVTX and shared.st_mode & stat.S_IWOTH
    return bool(sticky_and_open) and owner not in (os.geteuid(), shared.st_uid)


def _refuse_planted_file(resolved: str, given: str) -> None:
    try:
        st = os.lstat(resolved)
    except OSError:
        return
    folder = os.path.dirname(resolved)
    if not _shared_folder_stranger(folder, st.st_uid):
        return
    raise PermissionError(
        errno.EPERM,
        f"refusing to open {given!r} with a flag that creates it: {resolved!r} exists already "
        f"and belongs to uid {st.st_uid}, in {folder!r}, a folder anyone can write to (sticky, "
        "like /tmp), so another user may have made it to read what this program writes. "
        "Remove it, use a folder only you can write to, or, if you trust that file, open it "
        "with flag='w' or 'r'",
        resolved,
    )


def _refuse_planted_link(link: str, st: os.stat_result, given: str) -> None:
    folder = os.path.dirname(link)
    if not _shared_folder_stranger(folder, st.st_uid):
        return
    via = "" if link == os.path.abspath(given) else f" (on the way to {given!r})"
    raise PermissionError(
        errno.EPERM,
        f"refusing to follow {link!r}{via}: it is a symlink owned by uid {st.st_uid} in "
        f"{folder!r}, a folder anyone can write to (sticky, like /tmp), so another user may "
        "have planted it to make this program write or read a file of their choosing. "
        "Remove the link, or use a path in a folder only you can write to",
        link,
    )


def _resolve(path: str | os.PathLike[str]) -> Path:
    return resolve_data_path(path)


def refuse_read_only(*paths: str) -> None:
    """Raise ``ReadOnlyError`` if one of ``paths`` exists and this process may not write it.

    A file's owner who made it read-only (``chmod 444``) meant it to stay as it is. A save
    that renames a new file over it needs only the folder to be writable, so without this
    check the file would be replaced anyway; refusing at open loses nothing (no write has
    been accepted yet), unlike failing at the first save.
    """
    for path in paths:
        if os.path.exists(path) and not os.access(path, os.W_OK):
            mode = stat.S_IMODE(os.stat(path).st_mode)
            raise ReadOnlyError(
                f"{path!r} is read-only (mode {mode:o}); open it with flag='r' to read it, "
                "or make it writable (chmod u+w) to change it"
            )


def check_side_file(path: Path) -> None:
    """Refuse a symlink at the path of one of our side files (lock, previous generation).

    Raises:
        PermissionError: ``path`` is a symlink; nothing was followed or changed.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise _side_link_error(path)


def _side_link_error(path: Path) -> PermissionError:
    return PermissionError(
        errno.EPERM,
        f"{str(path)!r} is a symlink, but persistdict made that name for a file of its own; "
        "it does not follow it (someone may have planted it to make this program overwrite "
        "another file). Remove the link and try again",
        os.fspath(path),
    )


def open_side_file(path: Path, flags: int, mode: int = 0o600) -> int:
    """``os.open`` for a side file: never through a symlink, and only a regular file.

    Raises:
        PermissionError: a symlink or something other than a regular file is at ``path``.
    """
    try:
        # O_NONBLOCK: a FIFO planted at the name must not hang the open.
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC | _NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (exc.errno == errno.EEXIST and os.path.islink(path)):
            raise _side_link_error(path) from None
        raise
    try:
        st = os.fstat(fd)
    except BaseException:
        _close_quietly(fd)
        raise
    problem = None
    if not stat.S_ISREG(st.st_mode):
        problem = "is not a regular file"
    elif flags & (os.O_WRONLY | os.O_RDWR) and st.st_nlink != 1:
        # A hard link to some other file, planted where links to others' files are allowed
        # (fs.protected_hardlinks=0): writing to it would change that file.
        problem = f"has {st.st_nlink} names (hard links)"
    if problem is not None:
        _close_quietly(fd)
        raise PermissionError(
            errno.EPERM,
            f"{str(path)!r} {problem}, but persistdict made that name for a file of its own "
            "and will not write to it; remove it and try again",
            os.fspath(path),
        )
    return fd


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
    previous = previous_path(target)
    check_side_file(previous)  # renaming over a planted link would be harmless; say so anyway
    with contextlib.suppress(OSError):
        kept = os.lstat(previous)
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
        os.replace(link, previous)
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
    if old is None:
        # A new target: the temp file's mode (less the umask) is the final mode already.
        create_mode = 0o666 if mode is None else mode
    else:
        # Only the owner's bits of the target's mode: until _copy_owner_and_mode has set the
        # owner and group, the group and other bits would open the file to the wrong people.
        create_mode = stat.S_IMODE(old.st_mode) & stat.S_IRWXU
    while True:
        tmp = _temp_path(target)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, create_mode)
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
    if keep_previous and old is not None:
        _close_previous(target, old)


def _close_previous(target: Path, old: os.stat_result) -> None:
    """Keep only the owner's bits on the previous generation, now that the new version is in
    place and the old file has no other name; best effort, like the link itself.

    Until the rename the old file was the data file, with the data file's mode, so this
    widens nothing; afterwards the data file's mode may be narrowed (``chmod 600``) while the
    older version waits beside it, and others must not read it there. ``restore_previous``
    gives it the data file's mode back.
    """
    with contextlib.suppress(OSError):
        fd = open_side_file(previous_path(target), os.O_RDONLY)
        try:
            kept = os.fstat(fd)
            if (kept.st_ino, kept.st_dev) == (old.st_ino, old.st_dev) and hasattr(os, "fchmod"):
                os.fchmod(fd, stat.S_IMODE(kept.st_mode) & stat.S_IRWXU)
        finally:
            os.close(fd)


def give_owner_and_mode(path: str | os.PathLike[str], old: os.stat_result) -> None:
    """Give the file at ``path`` (a new version, not yet in place) the owner, group and mode
    of ``old``, the status of the file it is about to replace, as ``atomic_write`` does.
    """
    fd = open_side_file(Path(path), os.O_RDONLY)
    try:
        _copy_owner_and_mode(fd, Path(path), old)
    finally:
        os.close(fd)


def _copy_owner_and_mode(fd: int, tmp: Path, old: os.stat_result) -> None:
    # Owner and group first, mode second: widening before the chown would let the group of
    # whoever runs this (root rewriting a user's file) read the new bytes for a moment.
    mode = stat.S_IMODE(old.st_mode)
    if hasattr(os, "fchown"):
        new = os.fstat(fd)
        if (old.st_uid, old.st_gid) != (new.st_uid, new.st_gid):
            try:  # only root may give a file away
                os.fchown(fd, old.st_uid, old.st_gid)
            except OSError:  # a member of the file's group may still keep the group
                with contextlib.suppress(OSError):
                    os.fchown(fd, -1, old.st_gid)
            new = os.fstat(fd)
        if new.st_gid != old.st_gid:
            # The group bits were meant for the old group; members of the new one were
            # "others" to the old file, so they get what others got, no more.
            mode = mode & ~stat.S_IRWXG | (mode & stat.S_IRWXO) << 3
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)
    else:  # pragma: no cover - Windows
        os.chmod(tmp, mode)


def restore_previous(path: str | os.PathLike[str]) -> Path:
    """Put the previous generation back in place of a damaged ``path``; return where the
    damaged file was kept.

    The damaged file is hard-linked as ``<name>.corrupt-<UTC time>`` first, so nothing is
    destroyed; then the previous generation is renamed over the target (atomically, and
    durably once the folder is fsynced). A crash in between leaves the damaged target in
    place and the call can simply be repeated.

    Raises:
        FileNotFoundError: there is no previous generation.
        PermissionError: what is at its name is a symlink, not a regular file, or belongs to
            neither this user nor the target's owner (someone else put it there).
    """
    target = _resolve(path)
    previous = previous_path(target)
    try:
        kept_st = os.lstat(previous)
    except FileNotFoundError:
        raise FileNotFoundError(
            errno.ENOENT, "no previous generation", os.fspath(previous)
        ) from None
    check_side_file(previous)
    target_st = os.stat(target)
    _check_previous_owner(previous, kept_st, target_st)
    if hasattr(os, "fchmod"):
        # Back in place, it takes the data file's mode again (see _close_previous); only
        # its owner or root may, and the restore goes on without it.
        fd = open_side_file(previous, os.O_RDONLY)
        try:
            with contextlib.suppress(PermissionError):
                os.fchmod(fd, stat.S_IMODE(target_st.st_mode))
        finally:
            os.close(fd)
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


def read_previous(path: str | os.PathLike[str]) -> tuple[bytes, os.stat_result]:
    """The bytes and status of the previous generation of ``path``, checked as
    ``restore_previous`` checks it, and never read through a symlink.

    Raises:
        FileNotFoundError: there is no previous generation.
        PermissionError: as for ``restore_previous``.
    """
    target = _resolve(path)
    previous = previous_path(target)
    fd = open_side_file(previous, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        kept = os.fstat(f.fileno())
        _check_previous_owner(previous, kept, os.stat(target))
        return f.read(), kept


def _check_previous_owner(previous: Path, kept: os.stat_result, target: os.stat_result) -> None:
    # A previous generation is a hard link of an earlier target, so it has the target's
    # owner. Another user's file at that name was put there by them: restoring it would
    # hand them the data file.
    if not stat.S_ISREG(kept.st_mode):
        raise PermissionError(
            errno.EPERM,
            f"{str(previous)!r} is not a regular file; persistdict did not make it. Remove it",
            os.fspath(previous),
        )
    if hasattr(os, "geteuid") and kept.st_uid not in (os.geteuid(), target.st_uid):
        raise PermissionError(
            errno.EPERM,
            f"{str(previous)!r} belongs to uid {kept.st_uid}, neither you nor the owner of "
            f"the data file (uid {target.st_uid}), so persistdict did not write it: it was "
            "left as it is and not restored. Remove it, or restore a backup",
            os.fspath(previous),
        )


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
            # PermissionError: another user's file in a sticky folder (a planted name, or
            # the temp file of root rewriting this file); not ours to remove, and harmless.
            with contextlib.suppress(FileNotFoundError, PermissionError):
                stale.unlink()
                removed.append(stale)
    return removed
