"""The dbm backend: the standard library's ``dbm`` file, the store ``shelve`` uses.

Which dbm module is used is ``dbm``'s own choice (gnu, ndbm, sqlite3 on 3.13+, or dumb), and
for an existing file ``dbm.whichdb`` decides. A ``dbm.sqlite3`` file (Python 3.13's default)
is read and written here through ``sqlite3`` with the same table and statements: its module
ties the connection to the thread that opened it, which a dict shared by threads can't use,
and this way Python 3.10-3.12 open such files too. Keys are stored as UTF-8; values as the
serializer's bytes. dbm has no transactions, so ``transaction()`` rolls back by an undo
journal kept by ``PersistDict``: atomic against exceptions, not against a crash midway.
Writers hold the same inter-process lock as snapshot files, since most dbm modules have none.
"""

from __future__ import annotations

import contextlib
import dbm
import errno
import os
from collections.abc import Iterator
from typing import Any, ClassVar

from persistdict.backends.base import BackendBase, fork_generation
from persistdict.backends.dbm_sqlite3 import SqliteDbm
from persistdict.detect import is_dbm_sqlite3
from persistdict.errors import ClosedError, CorruptError
from persistdict.locking import DEFAULT_TIMEOUT, FileLock, forked_writer_error

__all__ = ["DbmBackend"]

# dbm handles a forked child inherited: closing one there could write the parent's index.
_inherited: list[Any] = []


def _key_bytes(key: str) -> bytes:
    # surrogatepass: a str key with a lone surrogate is still a valid dict key.
    return key.encode("utf-8", "surrogatepass")


class DbmBackend(BackendBase):
    """A dict stored in a stdlib ``dbm`` database at ``path``."""

    name: ClassVar[str] = "dbm"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        flag: str = "c",
        mode: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.path = os.fspath(path)
        self.read_only = flag == "r"
        kind = dbm.whichdb(self.path)
        if kind is None and flag in ("r", "w"):
            raise FileNotFoundError(
                errno.ENOENT,
                f"no dbm database at {self.path!r}; open it with flag='c' to create it",
                self.path,
            )
        self._lock: FileLock | None = None
        self._generation = fork_generation()
        if not self.read_only:
            self._lock = FileLock(self.path, timeout)
            self._lock.acquire()
        try:
            # Under the lock: a writer refused by it has not read the file (a SQLite read
            # marks the -shm file of a dbm.sqlite3 database).
            sqlite_file = kind in ("", "dbm.sqlite3") and is_dbm_sqlite3(self.path)
            if kind == "" and not sqlite_file:
                raise CorruptError(
                    f"{self.path!r} exists but no dbm module recognises it; it was left untouched"
                )
            self._db: Any
            if sqlite_file:
                self._db = SqliteDbm(self.path, flag)
            else:
                opener: Any = dbm.open  # typeshed wants a literal flag; open() checked ours
                self._db = opener(self.path, flag, 0o666 if mode is None else mode)
                if type(self._db).__module__ == "dbm.sqlite3":  # a new file, on 3.13+
                    self._db.close()
                    self._db = SqliteDbm(self.path, "r" if self.read_only else "w")
        except dbm.error[0] as exc:
            self._release()
            raise CorruptError(f"can't open the dbm database {self.path!r}: {exc}") from exc
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    @property
    def _live(self) -> Any:
        if self._db is None:
            raise ClosedError(f"{self.describe()} is closed")
        return self._db

    def get(self, key: str) -> Any:
        try:
            return self._live[_key_bytes(key)]
        except KeyError:
            raise KeyError(key) from None

    def set(self, key: str, value: Any) -> None:
        self.check_writable()
        if isinstance(value, str):
            value = value.encode("utf-8")
        self._live[_key_bytes(key)] = value

    def delete(self, key: str) -> None:
        self.check_writable()
        try:
            del self._live[_key_bytes(key)]
        except KeyError:
            raise KeyError(key) from None

    def contains(self, key: str) -> bool:
        return _key_bytes(key) in self._live

    def iter_keys(self) -> Iterator[str]:
        db = self._live
        if hasattr(db, "firstkey"):  # dbm.gnu walks the file without building a list
            key = db.firstkey()
            while key is not None:
                following = db.nextkey(key)
                yield key.decode("utf-8", "surrogatepass")
                key = following
        else:
            for key in db.keys():  # noqa: SIM118 - dbm objects are not iterable everywhere
                yield key.decode("utf-8", "surrogatepass")

    def count(self) -> int:
        return len(self._live)

    def check_writable(self) -> None:
        super().check_writable()
        if self._generation != fork_generation():
            # dbm files have no locking of their own: a child's write would corrupt the file.
            raise forked_writer_error(self.path)

    def flush(self) -> None:
        db = self._db
        if db is not None and not self.read_only:
            self.check_writable()
            if hasattr(db, "sync"):  # dbm.sqlite3 and ndbm write through: nothing to sync
                db.sync()

    def prepare_fork(self) -> None:
        """Save the index just before ``os.fork()``, so the child inherits none unsaved that
        its exit could write. A failure must not stop the fork; the next ``flush()`` reports it.
        """
        with contextlib.suppress(OSError, *dbm.error):
            self.flush()

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None and self._generation != fork_generation():
            _inherited.append(db)
            self._lock = None  # the parent's; locking.py already let go of the child's copy
            return
        if db is not None:
            try:
                db.close()
            finally:
                self._release()

    def describe(self) -> str:
        return f"dbm {self.path!r}" + (" read-only" if self.read_only else "")
