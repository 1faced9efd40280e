"""An inter-process write lock for snapshot files, with a bounded wait.

The lock lives on a side file, ``.<name>.persistdict-lock``, not on the data file: every flush
replaces the data file's inode, so a lock on it would protect nothing. The side file is left
in place after use; the OS drops the lock itself when its holder dies, so a crash never leaves
the folder in a state that blocks the next open.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import threading
import time
import weakref
from pathlib import Path

from persistdict.errors import ClosedError, LockedError, no_such
from persistdict.fileio import open_side_file, resolve_data_path

__all__ = [
    "DEFAULT_TIMEOUT",
    "FileLock",
    "WriterGate",
    "check_timeout",
    "forked_writer_error",
    "lock_path_for",
]

#: Seconds a writer waits for another process's lock before ``LockedError``: long enough to
#: ride out another process's flush or transaction, short enough that a stuck holder is
#: reported rather than hanging a web request. Shared by every backend that waits on a lock.
DEFAULT_TIMEOUT = 10.0

_held: weakref.WeakSet[FileLock] = weakref.WeakSet()

# The locks this process holds, by lock file, with the thread that took each. A second open
# in the thread that holds the lock could only wait for itself: it fails at once. Another
# thread waits, as another process does, since the holder may close meanwhile.
_holders: weakref.WeakValueDictionary[str, FileLock] = weakref.WeakValueDictionary()


def forked_writer_error(path: str) -> ClosedError:
    """What a forked child gets when it changes a file through a writer its parent opened."""
    return ClosedError(
        f"{path!r} was opened for writing in the parent process before fork(), and the parent "
        "holds its write lock: this copy can't be changed or saved. Read it, or open the file "
        "again in the child with persistdict.open() (it waits for the parent to close it)"
    )


def check_timeout(timeout: object) -> float:
    """Return ``timeout`` as a float if it is a finite number of seconds >= 0, else raise."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    if not 0 <= timeout < float("inf"):
        raise ValueError(f"timeout must be a finite number of seconds >= 0, not {timeout!r}")
    return float(timeout)


def lock_path_for(path: str | os.PathLike[str]) -> Path:
    """The lock side file of ``path``, beside the file a symlinked ``path`` points at.

    Raises:
        PermissionError: ``path`` goes through a symlink planted in a shared sticky folder
            (see ``persistdict.fileio.resolve_data_path``).
    """
    target = resolve_data_path(path)
    return target.parent / f".{target.name}.persistdict-lock"


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    # flock, not lockf: flock locks belong to the open file, so a second open of the same
    # file in the same process is refused too, where a POSIX record lock would be granted.
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


class WriterGate:
    """The same side-file lock, taken around each write transaction rather than for as long
    as the store is open: for an engine whose own writer lock waits without a limit (LMDB's
    is a mutex in lock.mdb, with no timed wait), so that a writer gives up after ``timeout``
    seconds with ``LockedError`` instead of hanging behind another process's long
    ``transaction()``.

    One gate per store per process; callers serialize their own threads (they hold the
    store's lock while they write), and ``enter``/``leave`` nest. Taking and dropping an
    uncontended lock is two system calls per write transaction. A forked child never drops
    the lock through the descriptor it inherited (that would drop its parent's): it opens its
    own on first use.
    """

    def __init__(self, data_path: str, lock_path: str | os.PathLike[str]) -> None:
        self.data_path = data_path
        self.path = Path(lock_path)
        self._fd: int | None = None
        self._depth = 0
        self._pid = os.getpid()

    def enter(self, timeout: float, what: str) -> None:
        """Take the lock (or nest), waiting up to ``timeout`` seconds; ``LockedError`` names
        ``what`` after that."""
        if self._pid != os.getpid():
            self._forget()
        if self._depth:
            self._depth += 1
            return
        fd = self._fd
        if fd is None:
            fd = self._fd = self._open()
        if not _try_lock(fd):
            deadline = time.monotonic() + timeout
            delay = 0.001
            while not _try_lock(fd):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LockedError(
                        f"{what} is being written by another process (inside a transaction "
                        f"or a long write); waited {timeout:g}s. Retry, or pass a longer "
                        "timeout=",
                        cli_message=f"{what} is being written by another process; waited "
                        f"{timeout:g}s. Retry, or pass a longer --timeout",
                    )
                time.sleep(min(delay, left))
                delay = min(delay * 2, 0.05)
        self._depth = 1

    def _open(self) -> int:
        try:
            return open_side_file(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except PermissionError as exc:
            if exc.errno == errno.EPERM:  # open_side_file's refusal of a link
                raise
            # Made by another writer under a umask that left it 0o644: a read-only
            # descriptor can be locked all the same.
            try:
                return open_side_file(self.path, os.O_RDONLY)
            except OSError:
                raise exc from None

    def leave(self) -> None:
        """Undo one ``enter``; the lock is dropped when the outermost one is undone."""
        if self._pid != os.getpid() or not self._depth:
            return  # a forked child's inherited state: the parent's lock, not ours to drop
        self._depth -= 1
        if not self._depth and self._fd is not None:
            _unlock(self._fd)

    def close(self) -> None:
        """Close the descriptor (dropping the lock if this process holds it)."""
        if self._pid != os.getpid():
            self._forget()
            return
        fd, self._fd = self._fd, None
        self._depth = 0
        if fd is not None:
            os.close(fd)

    def _forget(self) -> None:
        # Closing an inherited descriptor leaves a lock held through the parent's in force.
        fd, self._fd = self._fd, None
        self._depth = 0
        self._pid = os.getpid()
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


class FileLock:
    """An exclusive lock held by one writer of ``path`` at a time, across processes."""

    def __init__(self, path: str | os.PathLike[str], timeout: float = DEFAULT_TIMEOUT) -> None:
        self.data_path = os.fspath(path)
        self.path = lock_path_for(path)
        self.timeout = check_timeout(timeout)
        self._fd: int | None = None
        self._thread = 0  # the thread that took the lock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, waiting up to ``timeout`` seconds; ``LockedError`` after that."""
        if self._fd is not None:
            return
        other = _holders.get(str(self.path))
        if other is not None and other.held and other._thread == threading.get_ident():
            raise LockedError(
                f"{self.data_path!r} is already open for writing in this thread, by another "
                "dict: waiting would never end. Use that dict or close it first; to read "
                "alongside it, open with flag='r'"
            )
        try:
            # Never through a symlink, never into a hard link: a planted one would make the
            # pid written below land in (and truncate) a file of the attacker's choosing.
            fd = open_side_file(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except FileNotFoundError:
            raise no_such(
                f"folder {str(self.path.parent)!r} to hold the file",
                self.data_path,
                "create it first",
            ) from None
        except PermissionError as exc:
            if exc.errno == errno.EPERM:  # open_side_file's refusal: a link, not a lock file
                raise
            # The side file was left by another user (created 0o644 under their umask): a
            # read-only descriptor can still be locked, so it must not block this writer.
            try:
                fd = open_side_file(self.path, os.O_RDONLY)
            except PermissionError as inner:
                if inner.errno == errno.EPERM:
                    raise
                raise exc from None
            except OSError:
                raise exc from None
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        try:
            while not _try_lock(fd):
                if time.monotonic() >= deadline:
                    holder = self._holder_pid(fd)
                    by = f" by process {holder}" if holder else ""
                    if holder == os.getpid():
                        by += " (this process: another dict open on the same file)"
                    locked = (
                        f"{self.data_path!r} is locked for writing{by}; waited {self.timeout:g}s."
                        " Close the other writer, pass a longer"
                    )
                    raise LockedError(
                        f"{locked} timeout=, or open with flag='r'",
                        cli_message=f"{locked} --timeout",
                    )
                time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
                delay = min(delay * 2, 0.1)
        except BaseException:
            os.close(fd)
            raise
        # Record who holds it, so a waiter's error can name the process.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0) if hasattr(os, "pwrite") else None
        self._fd = fd
        self._thread = threading.get_ident()
        _held.add(self)
        _holders[str(self.path)] = self

    @staticmethod
    def _holder_pid(fd: int) -> int | None:
        try:
            raw = os.pread(fd, 32, 0) if hasattr(os, "pread") else b""
            pid = int(raw.decode().strip() or "0")
        except (OSError, ValueError):
            return None
        if pid <= 0:
            return None
        try:  # a holder that couldn't write its pid leaves an earlier, maybe dead, one there
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except OSError:  # alive, but another user's (PermissionError), or no kill() here
            pass
        return pid

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            _held.discard(self)
            if _holders.get(str(self.path)) is self:
                del _holders[str(self.path)]
            os.close(fd)  # closing the last descriptor drops the lock

    def forget_after_fork(self) -> None:
        """In a forked child: close the inherited descriptor without unlocking the parent.

        flock is shared by every descriptor of the open file; closing ours leaves the
        parent's lock in force and stops this child from keeping it alive after the parent
        closes its dict.
        """
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _forget_all_after_fork() -> None:
    for lock in list(_held):
        lock.forget_after_fork()
    _held.clear()
    _holders.clear()  # the child holds none; its own open of the file waits for the parent


if hasattr(os, "register_at_fork"):  # pragma: no branch
    os.register_at_fork(after_in_child=_forget_all_after_fork)
