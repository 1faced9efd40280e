"""The SQLite backend, the embedded default: one table per dict, many dicts per file.

Durability: the database runs in WAL mode. With ``commit_every=0`` (default) every write is
committed before the call returns; with ``commit_every=N`` at most N writes are pending and
``flush()``/``close()`` commit them. ``synchronous="NORMAL"`` (default) survives a killed
process, and an OS crash loses at most the last commits; ``synchronous="FULL"`` fsyncs the WAL
on every commit and survives power loss.

Concurrency: any number of processes may read and write one file. Writes that read first
(``transaction()``, ``update()``, ``pop``...) take the write lock up front with ``BEGIN
IMMEDIATE``, so two writers never deadlock upgrading a read lock; waits are absorbed by
SQLite's busy timeout (``timeout=``), past which [`LockedError`][persistdict.LockedError] is raised.
A ``commit_every`` batch holds the write lock from its first write until it commits.

After ``os.fork()`` the child closes the connections it inherited and opens its own on first
use; a file the parent was writing in a transaction (or an open batch) at the fork can't be
written by the child (``LockedError``). Batches idle at the fork are committed just before it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import chain
from operator import itemgetter
from typing import Any, ClassVar, NoReturn, TypeVar

from persistdict.backends.base import (
    BackendBase,
    check_commit_every,
    check_flag,
    check_table_name,
    fork_generation,
)
from persistdict.errors import ClosedError, CorruptError, LockedError, ReadOnlyError
from persistdict.locking import DEFAULT_TIMEOUT, check_timeout

__all__ = ["SqliteBackend"]

_T = TypeVar("_T")
_PAGE = 1000
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
# What SQLite (and Python's sqlite3) say about a file that is not a sound database.
_DAMAGED = (
    "not a database",
    "malformed",
    "corrupt",
    "unsupported file format",
    "Could not decode to UTF-8",
)
# Connections inherited across fork() that were inside a transaction: never closed in the
# child, where closing rolls back and could clear the WAL index entries of a transaction the
# parent has in flight. See _after_fork_in_child.
_abandoned: list[sqlite3.Connection] = []
_live: weakref.WeakSet[SqliteBackend] = weakref.WeakSet()
# Files a forked child can't write: a connection it inherited holds SQLite's write lock there.
_locked_in_child: set[str] = set()


def _forked_in_transaction(path: str) -> str:
    return (
        f"{path!r} was inside a transaction or an uncommitted commit_every batch when this "
        "process forked; that transaction belongs to the parent, and SQLite's write lock on the "
        "file stays taken in this child. Commit before fork() (flush(), or fork outside "
        "`with d.transaction()`), or open the database only in the child"
    )


def _after_fork_in_child() -> None:
    """Close, in a forked child, every connection it inherited that is not in a transaction.

    SQLite keeps one table of its POSIX locks per process, and a child inherits the parent's
    table but not the locks themselves. A connection the child opens to the same file would
    then count the inherited entries as locks it holds: when the parent later closed its last
    connection it would delete the WAL that the child's commits were still going to, and they
    were lost (tests/concurrency/test_fork.py::test_child_commits_survive_the_parent_closing).
    Closing the inherited connections here empties that table; it releases nothing of the
    parent's, since POSIX locks belong to the process that took them.
    """
    for backend in list(_live):
        cx = backend._cx
        if cx is None:
            continue
        if cx.in_transaction:
            _locked_in_child.add(os.path.realpath(backend.path))
            _keep_forever(cx)
        else:
            with contextlib.suppress(sqlite3.Error):
                cx.close()
            _abandoned.append(cx)  # already closed; the stale object just stays referenced
        backend._cx = cx


def _keep_forever(cx: sqlite3.Connection) -> None:
    # Not even interpreter shutdown may close (and so roll back) this connection in the child.
    _abandoned.append(cx)
    with contextlib.suppress(ImportError, AttributeError):
        import ctypes

        ctypes.pythonapi.Py_IncRef(ctypes.py_object(cx))


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent only on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _is_locked(exc: sqlite3.Error) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def _retry_busy(run: Callable[[], _T], timeout: float) -> _T:
    """Run ``run()``, again and again while SQLite answers "database is locked", up to ``timeout``.

    SQLite's busy handler (the ``timeout`` given to ``sqlite3.connect``) absorbs most waits but
    not all: ``PRAGMA journal_mode=WAL`` on a new file that other processes are opening at the
    same moment fails at once, without waiting (seen in about 1 run in 30 with 4 processes;
    regression test: tests/concurrency/test_processes.py::test_processes_create_one_file_at_once).
    Those statements change nothing when they fail, so running them again is safe.
    """
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            return run()
        except sqlite3.OperationalError as exc:
            if not _is_locked(exc) or time.monotonic() + delay >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _first_column(rows: list[Any]) -> Iterator[Any]:
    return map(_FIRST, rows)


_FIRST = itemgetter(0)


class _Translating:
    """``with backend._errors():`` raises SQLite's errors as persistdict's (``LockedError``...).

    A class, not ``@contextmanager``: it wraps every write, and a generator-based context
    manager costs about 0.7 µs per use, a sixth of a committed-in-batch SQLite write.
    """

    __slots__ = ("_backend",)

    def __init__(self, backend: SqliteBackend) -> None:
        self._backend = backend

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, (sqlite3.Error, UnicodeDecodeError)):
            self._backend._raise(exc)


class SqliteBackend(BackendBase):
    """A dict stored in table ``table`` of the SQLite file ``path``.

    Args:
        path: the database file; created if missing (flags ``c``/``n``).
        table: the table name, ``[A-Za-z_][A-Za-z0-9_]*``; several dicts share one file.
        commit_every: 0 commits each write; N > 0 commits after every N writes.
        flag: ``r``, ``w``, ``c`` or ``n`` as in ``dbm.open``; ``n`` empties only ``table``.
        mode: permission bits for a file this call creates (less the umask).
        timeout: seconds to wait for another process's write lock.
        synchronous: SQLite's ``PRAGMA synchronous``: ``"NORMAL"`` or ``"FULL"``.
    """

    name: ClassVar[str] = "sqlite"
    schemes: ClassVar[tuple[str, ...]] = ("sqlite",)
    suffixes: ClassVar[tuple[str, ...]] = (".db", ".sqlite", ".sqlite3")
    native_transactions: ClassVar[bool] = True

    @staticmethod
    def sniff(head: bytes) -> bool:
        return head.startswith(b"SQLite format 3\x00")

    def __init__(
        self,
        path: str | os.PathLike[str],
        table: str = "items",
        commit_every: int = 0,
        *,
        flag: str = "c",
        mode: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        synchronous: str = "NORMAL",
    ) -> None:
        self.table = check_table_name(table)
        check_commit_every(commit_every)
        sync = str(synchronous).upper()
        if sync not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {_SYNCHRONOUS}, not {synchronous!r}")
        check_flag(flag)
        self.path = os.fspath(path)
        self.flag = flag
        self.read_only = flag == "r"
        self.commit_every = commit_every
        self.synchronous = sync
        self.timeout = check_timeout(timeout)
        self._mode = mode
        self._pending = 0  # writes since the last commit when commit_every > 0
        self._depth = 0  # nesting of transaction()
        self._count: int | None = None
        self._count_version = -1
        self._table_exists = True
        q = '"' + self.table + '"'
        self._sql_get = f"SELECT value FROM {q} WHERE key = ?"
        self._sql_has = f"SELECT 1 FROM {q} WHERE key = ?"
        self._sql_set = (
            f"INSERT INTO {q} (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )
        self._sql_del = f"DELETE FROM {q} WHERE key = ?"
        self._sql_count = f"SELECT count(*) FROM {q}"
        self._sql_clear = f"DELETE FROM {q}"
        self._sql_keys_first = f"SELECT key FROM {q} ORDER BY key LIMIT {_PAGE}"
        self._sql_keys_next = f"SELECT key FROM {q} WHERE key > ? ORDER BY key LIMIT {_PAGE}"
        self._sql_items_first = f"SELECT key, value FROM {q} ORDER BY key LIMIT {_PAGE}"
        self._sql_items_next = (
            f"SELECT key, value FROM {q} WHERE key > ? ORDER BY key LIMIT {_PAGE}"
        )
        self._cx: sqlite3.Connection | None = None
        self._connect(initial=True)

    # Connection management.

    def _connect(self, *, initial: bool = False) -> sqlite3.Connection:
        exists = os.path.exists(self.path)
        if not exists and self.flag in ("r", "w"):
            raise FileNotFoundError(
                errno.ENOENT,
                f"no such file: {self.path!r}; open it with flag='c' to create it",
                self.path,
            )
        if not exists and self._mode is not None:
            # sqlite3 creates files as 0644; create it ourselves to honour mode (an empty file
            # is a valid empty database).
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self._mode))
        try:
            if self.read_only:
                uri = "file:" + os.path.abspath(self.path).replace("?", "%3f").replace("#", "%23")
                cx = sqlite3.connect(
                    uri + "?mode=ro",
                    uri=True,
                    timeout=self.timeout,
                    check_same_thread=False,
                    isolation_level=None,
                )
            else:
                cx = sqlite3.connect(
                    self.path, timeout=self.timeout, check_same_thread=False, isolation_level=None
                )
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        try:
            if not self.read_only:
                wal = "PRAGMA journal_mode=WAL"
                mode = _retry_busy(lambda: cx.execute(wal).fetchone(), self.timeout)[0]
                if str(mode).lower() != "wal":  # pragma: no cover - e.g. a network filesystem
                    raise CorruptError(f"{self.path!r}: can't switch to WAL mode (got {mode})")
            cx.execute(f"PRAGMA synchronous={self.synchronous}")
            if self.read_only:
                found = cx.execute(
                    "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (self.table,)
                ).fetchone()
                self._table_exists = found is not None
            else:
                cx.execute(
                    f'CREATE TABLE IF NOT EXISTS "{self.table}" '
                    "(key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID"
                )
                if initial and self.flag == "n":
                    cx.execute(self._sql_clear)
            if self._table_exists:
                self._check_schema(cx)
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            cx.close()
            raise self._translate(exc) from exc
        except BaseException:
            cx.close()
            raise
        self._cx = cx
        self._generation = fork_generation()
        _live.add(self)
        return cx

    def _check_schema(self, cx: sqlite3.Connection) -> None:
        # fetchall(), not iteration: a cursor left open by an error would keep the file locked
        # (a closed connection lingers until its last statement is gone).
        columns = [row[1] for row in cx.execute(f'PRAGMA table_info("{self.table}")').fetchall()]
        if columns[:2] != ["key", "value"] or len(columns) != 2:
            raise CorruptError(
                f"{self.path!r} has a table {self.table!r} that persistdict did not create "
                f"(columns: {', '.join(columns)}); it was left untouched. Pass table= another name"
            )

    @property
    def _conn(self) -> sqlite3.Connection:
        cx = self._cx
        if cx is None:
            raise ClosedError(f"{self.describe()} is closed; open it again with persistdict.open()")
        if self._generation != fork_generation():
            # After fork the child must not use the parent's connection (SQLite's rule);
            # pending uncommitted writes belong to the parent and are not replayed here.
            _abandoned.append(cx)
            self._cx = None
            self._pending = 0
            self._depth = 0
            return self._connect()
        return cx

    def _translate(self, exc: Exception) -> Exception:
        text = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and _is_locked(exc):
            return LockedError(
                f"{self.path!r} stayed locked by another connection for {self.timeout:g}s "
                f"({text}); retry, or pass a longer timeout="
            )
        if "readonly" in text or "read-only" in text:
            return ReadOnlyError(f"{self.path!r} can't be written: {text}")
        if isinstance(exc, UnicodeDecodeError) or (  # SQLite's own message held broken text
            isinstance(exc, sqlite3.DatabaseError) and any(sign in text for sign in _DAMAGED)
        ):
            return CorruptError(
                f"{self.path!r} is not a usable SQLite database ({text}); it was left "
                "untouched. Restore a backup or check the path"
            )
        if "unable to open" in text:
            return OSError(errno.EIO, f"can't open {self.path!r}: {text}", self.path)
        return exc

    def _damaged(self, what: str) -> CorruptError:
        # The table's schema forbids this, so the file was damaged or edited by another program.
        return CorruptError(
            f"{self.path!r} table {self.table!r} holds {what}: the file is damaged. Run "
            "check() (PRAGMA integrity_check) to see more, and restore a backup"
        )

    def _errors(self) -> _Translating:
        return _Translating(self)

    def _raise(self, exc: Exception) -> NoReturn:
        translated = self._translate(exc)
        if translated is exc:
            raise exc
        raise translated from exc

    # Writes and batching.

    def _begin(self, cx: sqlite3.Connection) -> None:
        # IMMEDIATE: take the write lock now, so a read-then-write never has to upgrade.
        cx.execute("BEGIN IMMEDIATE")

    def _write(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        self.check_writable()
        cx = self._conn
        try:  # not `with self._errors()`: this runs on every write, and try costs nothing
            if self._depth or self.commit_every == 0:
                return cx.execute(sql, params)
            if not cx.in_transaction:
                self._begin(cx)
            cur = cx.execute(sql, params)
            self._pending += 1
            if self._pending >= self.commit_every:
                cx.execute("COMMIT")
                self._pending = 0
            return cur
        except sqlite3.Error as exc:
            self._raise(exc)

    def get(self, key: str) -> Any:
        if not self._table_exists:
            raise KeyError(key)
        # try/except rather than `with self._errors()`: free unless raised, on the hottest path.
        try:
            row = self._conn.execute(self._sql_get, (key,)).fetchone()
        except UnicodeEncodeError:  # a key UTF-8 can't hold was never stored
            row = None
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            self._raise(exc)
        if row is None:
            raise KeyError(key)
        if row[0] is None:
            raise self._damaged(f"a NULL value for key {key!r}")
        return row[0]

    def contains(self, key: str) -> bool:
        if not self._table_exists:
            return False
        try:
            return self._conn.execute(self._sql_has, (key,)).fetchone() is not None
        except UnicodeEncodeError:
            return False
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            self._raise(exc)

    def set(self, key: str, value: Any) -> None:
        self._write(self._sql_set, (key, value))
        self._count = None

    def delete(self, key: str) -> None:
        try:
            deleted = self._write(self._sql_del, (key,)).rowcount
        except UnicodeEncodeError:
            deleted = 0
        if deleted == 0:
            raise KeyError(key)
        if self._count is not None:
            self._count -= 1

    def set_many(self, items: Iterable[tuple[str, Any]]) -> None:
        self.check_writable()
        cx = self._conn
        with self._errors():
            if self._depth:
                cx.executemany(self._sql_set, items)
            else:
                if cx.in_transaction:  # a commit_every batch: keep it to its N writes
                    cx.execute("COMMIT")
                    self._pending = 0
                self._begin(cx)
                try:
                    cx.executemany(self._sql_set, items)
                except BaseException:
                    cx.execute("ROLLBACK")
                    raise
                cx.execute("COMMIT")
        self._count = None

    def clear(self) -> None:
        self._write(self._sql_clear)
        self._count = 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.check_writable()
        cx = self._conn
        with self._errors():
            if self._depth == 0:
                if cx.in_transaction:  # a commit_every batch is open: it commits first
                    cx.execute("COMMIT")
                    self._pending = 0
                self._begin(cx)
            else:
                cx.execute(f"SAVEPOINT pd_{self._depth}")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            self._count = None
            if not self._owns(cx):
                raise  # a forked child unwinding the parent's transaction: not its to end
            with self._errors():
                if self._depth == 0:
                    cx.execute("ROLLBACK")
                else:
                    cx.execute(f"ROLLBACK TO pd_{self._depth}")
                    cx.execute(f"RELEASE pd_{self._depth}")
            raise
        self._depth -= 1
        if not self._owns(cx):
            raise LockedError(_forked_in_transaction(self.path))
        with self._errors():
            cx.execute("COMMIT" if self._depth == 0 else f"RELEASE pd_{self._depth}")

    # Reads that stream.

    def _pages(self, first: str, following: str) -> Iterator[list[Any]]:
        # Keyset pages rather than one open cursor: no read transaction stays open while the
        # caller works between steps (which would stall WAL checkpoints), memory stays flat,
        # and writes during the loop are allowed. Each key present throughout is seen once.
        if not self._table_exists:
            return
        with self._errors():
            rows = self._conn.execute(first).fetchall()
        while rows:
            if any(type(row[0]) is not str for row in rows):
                raise self._damaged("a key that is not text")
            yield rows
            if len(rows) < _PAGE:
                return
            with self._errors():
                rows = self._conn.execute(following, (rows[-1][0],)).fetchall()

    # chain() and map() step through each page in C: Python runs once per page, not per key.

    def iter_keys(self) -> Iterator[str]:
        pages = self._pages(self._sql_keys_first, self._sql_keys_next)
        return chain.from_iterable(map(_first_column, pages))

    def iter_items(self) -> Iterator[tuple[str, Any]]:
        return chain.from_iterable(self._pages(self._sql_items_first, self._sql_items_next))

    def count(self) -> int:
        if not self._table_exists:
            return 0
        cx = self._conn
        with self._errors():
            # data_version changes only when another connection commits, so a cached count
            # stays right until then (our own writes adjust or drop it). len() on a large
            # table therefore scans once, not on every call.
            version = cx.execute("PRAGMA data_version").fetchone()[0]
            if self._count is None or version != self._count_version:
                self._count = cx.execute(self._sql_count).fetchone()[0]
                self._count_version = version
        return self._count

    # Lifecycle.

    def flush(self) -> None:
        cx = self._cx
        if cx is None or self._depth:
            return
        with self._errors():
            if self._conn.in_transaction:
                self._conn.execute("COMMIT")
        self._pending = 0

    def _owns(self, cx: sqlite3.Connection) -> bool:
        return cx is self._cx and self._generation == fork_generation()

    def check_writable(self) -> None:
        super().check_writable()
        if _locked_in_child and os.path.realpath(self.path) in _locked_in_child:
            raise LockedError(_forked_in_transaction(self.path))

    def prepare_fork(self) -> None:
        """Commit an idle ``commit_every`` batch just before ``os.fork()``.

        An open batch would make the file unusable in the child (see ``_after_fork_in_child``).
        ``PersistDict`` calls this while it holds the dict's lock; a transaction in progress is
        left alone.
        """
        cx = self._cx
        if cx is None or self._depth or self._generation != fork_generation():
            return
        if cx.in_transaction:
            # A failed commit must not stop the fork; the child then reports the open batch.
            with contextlib.suppress(sqlite3.Error):
                cx.execute("COMMIT")
                self._pending = 0

    def close(self) -> None:
        cx = self._cx
        if cx is None:
            return
        if self._generation != fork_generation():
            _abandoned.append(cx)
            self._cx = None
            return
        if cx.in_transaction:
            # If this commit fails the dict stays open, so pending writes can be retried.
            with self._errors():
                cx.execute("COMMIT")
        self._cx = None
        cx.close()

    def check(self) -> list[str]:
        """SQLite's own ``PRAGMA integrity_check`` over the whole file, every table."""
        try:
            rows = self._conn.execute("PRAGMA integrity_check").fetchall()
        except sqlite3.Error as exc:
            return [f"{self.path!r}: {self._translate(exc)}"]
        return [f"{self.path!r}: {row[0]}" for row in rows if row[0] != "ok"]

    def describe(self) -> str:
        ro = " read-only" if self.read_only else ""
        return f"sqlite {self.path!r} table {self.table!r}{ro}"
