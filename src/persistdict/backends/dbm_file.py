"""The dbm backend: the standard library's ``dbm`` file, the store ``shelve`` uses.

Which dbm module is used is ``dbm``'s own choice (gnu, ndbm, sqlite3 on 3.13+, or dumb), and
for an existing file ``dbm.whichdb`` decides. A ``dbm.sqlite3`` file (Python 3.13's default)
is read and written here through ``sqlite3`` with the same table and statements: its module
ties the connection to the thread that opened it, which a dict shared by threads can't use,
and this way Python 3.10-3.12 open such files too. Keys are stored as UTF-8; values as the
serializer's bytes. dbm has no transactions, so ``transaction()`` rolls back by an undo
journal (``backends/journal.py``): atomic against exceptions, not against a crash midway.
Writers hold the same inter-process lock as snapshot files, since most dbm modules have none.
"""

from __future__ import annotations

import contextlib
import dbm
import os
import stat
from collections.abc import Iterator
from typing import Any, ClassVar

from persistdict.backends.base import BackendBase, check_flag, fork_generation
from persistdict.backends.dbm_sqlite3 import SqliteDbm
from persistdict.detect import is_dbm_sqlite3
from persistdict.errors import CorruptError, closed_error, no_such
from persistdict.fileio import (
    atomic_write,
    fsync_file,
    refuse_read_only,
    remove_stale_temps,
    resolve_data_path,
)
from persistdict.locking import DEFAULT_TIMEOUT, FileLock, check_timeout, forked_writer_error

__all__ = ["DbmBackend"]

# The names the stdlib dbm modules give their files besides the path itself (ndbm: .db or
# .dir/.pag; dumb: .dat/.dir/.bak).
_SUFFIXES = (".db", ".dir", ".pag", ".dat", ".bak")
# dbm handles a forked child inherited: closing one there could write the parent's index.
_inherited: list[Any] = []


# Files a dbm database may consist of beside (or instead of) ``path`` itself.
_SIDE_FILES = (".dir", ".dat", ".pag", ".db")
# What dbm.dumb raises reading a damaged index: it parses each line of the .dir file with
# ast.literal_eval and unpacks the result.
_DUMB_INDEX_ERRORS = (
    SyntaxError,
    ValueError,
    TypeError,
    AttributeError,
    MemoryError,
    RecursionError,
)


def _damaged_index(path: str, fault: str) -> CorruptError:
    return CorruptError(
        f"{path + '.dir'!r}, the index of the dbm.dumb database {path!r}, is damaged ({fault}); "
        "it was left untouched. Restore a backup of both files"
    )


def _check_dumb_index(path: str, db: Any) -> None:
    """Check every entry of a dbm.dumb index against its data file.

    dbm.dumb trusts its index: a damaged entry would make a read fail later with a raw
    ``OSError``/``TypeError``, allocate gigabytes, or return some other key's bytes. Its index is
    the private ``_index`` dict (key -> (offset, size)), read once at open.
    """
    index = getattr(db, "_index", None)
    if not isinstance(index, dict):  # pragma: no cover - another Python's dbm.dumb
        return
    size = os.path.getsize(path + ".dat")
    for raw_key, entry in index.items():
        if not (
            isinstance(entry, tuple)
            and len(entry) == 2
            and all(type(number) is int for number in entry)
            and entry[0] >= 0
            and entry[1] >= 0
            and entry[0] + entry[1] <= size
        ):
            key = raw_key.decode("utf-8", "backslashreplace")
            raise _damaged_index(
                path,
                f"the entry of key {key!r} is {entry!r}, not an (offset, size) inside the "
                f"{size}-byte .dat file",
            )


def _is_dumb(db: Any) -> bool:
    """Whether ``db`` is a ``dbm.dumb`` database with the private parts this module relies on
    (the same in CPython 3.10 to 3.13)."""
    return all(
        isinstance(getattr(db, name, None), want)
        for name, want in (("_index", dict), ("_dirfile", (str, bytes)), ("_datfile", (str, bytes)))
    ) and isinstance(getattr(db, "_modified", None), bool)


def _index_only_in_memory(db: Any) -> None:
    """Stop ``db`` (dbm.dumb) from appending each new key to its ``.dir`` file in place: an
    append cut short by a full disk or a crash leaves a torn index that no longer opens. New
    keys then wait in memory, like changed ones, for ``_save_dumb_index``."""

    def add_key(key: bytes, position_and_size: tuple[int, int]) -> None:
        db._index[key] = position_and_size

    db._addkey = add_key


def _save_dumb_index(db: Any) -> None:
    """Save dbm.dumb's index as snapshot files are saved, instead of its own ``_commit``,
    which renames the index away and rewrites it in place (torn by a full disk: every key
    lost). The values the index points at are fsynced first; then the whole index is written
    to a temp file and renamed over the ``.dir`` file (``persistdict.fileio.atomic_write``).
    On failure nothing on disk changed and the index stays unsaved, for a retry."""
    if not db._modified:
        return
    fd = os.open(os.fsdecode(db._datfile), os.O_RDONLY)
    try:
        fsync_file(fd)
    finally:
        os.close(fd)
    # dbm.dumb's own line format, which its _update reads back: repr of the Latin-1 key.
    text = "".join(f"{key.decode('Latin-1')!r}, {entry!r}\n" for key, entry in db._index.items())
    atomic_write(os.fsdecode(db._dirfile), text.encode("Latin-1"), getattr(db, "_mode", None))
    db._modified = False


def _key_bytes(key: str) -> bytes:
    # surrogatepass: a str key with a lone surrogate is still a valid dict key.
    return key.encode("utf-8", "surrogatepass")


def _mode_for(path: str, kind: str | None, mode: int | None) -> int:
    """The mode to hand ``dbm.open``: ``mode`` (default ``0o666``) for a new database, the
    existing one's for a database that exists.

    dbm.dumb gives its rewritten index files the mode it was opened with: reopened with the
    default, a 0600 database's index (the keys) became 0644 less the umask.
    """
    if kind:
        for name in (path, *(path + suffix for suffix in _SUFFIXES)):
            with contextlib.suppress(OSError):
                st = os.stat(name)
                if stat.S_ISREG(st.st_mode):
                    return stat.S_IMODE(st.st_mode)
    return 0o666 if mode is None else mode


class DbmBackend(BackendBase):
    """A dict stored in a stdlib ``dbm`` database at ``path``."""

    name: ClassVar[str] = "dbm"
    path: str
    durability: ClassVar[str] = (
        "written in place by the stdlib dbm; flush() syncs where dbm can; a crash "
        "mid-write can damage the file"
    )
    # No transactions, and a database kept in one file: a copy is written, then renamed back.
    rewrite = "file_copy"

    @classmethod
    def recognizes(cls, path: str, head: bytes) -> bool:
        # Python 3.13's whichdb names every SQLite file dbm.sqlite3; only one shaped as
        # dbm.sqlite3 writes it (a lone Dict table of BLOBs) is dbm's, the rest are sqlite's.
        return is_dbm_sqlite3(path) or dbm.whichdb(path) not in (None, "", "dbm.sqlite3")

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        flag: str = "c",
        mode: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.path = os.fspath(path)
        self.read_only = check_flag(flag) == "r"
        for name in (self.path, *(self.path + suffix for suffix in _SUFFIXES)):
            # Refuses a symlink (or, to create, a file) another user planted in /tmp & co.
            resolve_data_path(name, create=flag in ("c", "n"))
        kind = dbm.whichdb(self.path)
        if kind is None and any(os.path.exists(self.path + end) for end in _SIDE_FILES):
            kind = ""  # e.g. a dbm.dumb index damaged in its first byte: whichdb can't tell
        if kind is None and flag in ("r", "w"):
            raise no_such("dbm database", self.path)
        if not self.read_only:
            refuse_read_only(self.path, *(self.path + suffix for suffix in _SUFFIXES))
        self._lock: FileLock | None = None
        self._generation = fork_generation()
        # Also how long the dict waits at exit for a thread still using it.
        self.timeout = check_timeout(timeout)
        if not self.read_only:
            self._lock = FileLock(self.path, timeout)
            self._lock.acquire()
        try:
            # Under the lock: a writer refused by it has not read the file (a SQLite read
            # marks the -shm file of a dbm.sqlite3 database).
            sqlite_file = kind in ("", "dbm.sqlite3") and is_dbm_sqlite3(self.path)
            if kind == "" and not sqlite_file:
                raise CorruptError(
                    f"{self.path!r} exists but no dbm module of this Python recognises it; it "
                    "was left untouched. Check the path, or restore a backup"
                )
            self._db: Any
            if sqlite_file:
                self._db = SqliteDbm(self.path, flag)
            else:
                opener: Any = dbm.open  # typeshed wants a literal flag; open() checked ours
                self._db = opener(self.path, flag, _mode_for(self.path, kind, mode))
                if type(self._db).__module__ == "dbm.sqlite3":  # a new file, on 3.13+
                    self._db.close()
                    self._db = SqliteDbm(self.path, "r" if self.read_only else "w")
        except dbm.error[0] as exc:
            self._release()
            raise CorruptError(
                f"can't open the dbm database {self.path!r}: {exc}. It was left untouched; "
                "restore a backup, or open it with the Python whose dbm module wrote it"
            ) from exc
        except _DUMB_INDEX_ERRORS as exc:
            self._release()
            if kind != "dbm.dumb":
                raise
            raise _damaged_index(self.path, f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            self._release()
            raise
        self._dumb = _is_dumb(self._db)
        if self._dumb:
            try:
                _check_dumb_index(self.path, self._db)
            except BaseException:
                self._db.close()
                self._release()
                raise
            if not self.read_only:
                _index_only_in_memory(self._db)
                remove_stale_temps(self.path + ".dir")  # of a save cut short; we hold the lock
                if not os.path.exists(os.fsdecode(self._db._dirfile)):
                    # A new database: its .dir, even empty, is how dbm.whichdb tells it exists.
                    self._db._modified = True
                    _save_dumb_index(self._db)

    def _release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    @property
    def _live(self) -> Any:
        if self._db is None:
            raise closed_error(self.describe())
        return self._db

    def get(self, key: str) -> Any:
        try:
            return self._live[_key_bytes(key)]
        except KeyError:
            raise KeyError(key) from None

    def set(self, key: str, value: Any) -> None:
        self.check_writable()
        if isinstance(value, str):
            try:
                value = value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(
                    f"can't store the value for key {key!r} in the dbm database {self.path!r} "
                    f"as UTF-8 ({exc.reason}); nothing was written. Encode such text yourself "
                    "(for instance with the 'surrogateescape' error handler)"
                ) from None
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
                yield self._key_text(key)
                key = following
        else:
            for key in db.keys():  # noqa: SIM118 - dbm objects are not iterable everywhere
                yield self._key_text(key)

    def _key_text(self, key: bytes) -> str:
        try:
            return key.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as exc:  # every key stored here was UTF-8
            raise CorruptError(
                f"the dbm database {self.path!r} holds a key that is not UTF-8 ({key!r}): the "
                "file is damaged or was written by another program. It was left untouched; "
                "restore a backup"
            ) from exc

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
            if self._dumb:
                _save_dumb_index(db)
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
            if self._dumb and not self.read_only:
                try:
                    _save_dumb_index(db)
                except BaseException:
                    self._db = db  # still open: a close() after freeing space saves it
                    raise
            try:
                db.close()
            finally:
                self._release()

    def describe(self) -> str:
        return f"dbm {self.path!r}" + (" read-only" if self.read_only else "")
