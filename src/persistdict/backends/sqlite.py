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

Faults: SQLite answers a full disk or an I/O error by rolling the whole transaction back.
The writes of a ``commit_every`` batch are kept in memory until they commit, so a batch rolled
back that way is replayed by the next read, write, ``flush()`` or ``close()``; inside
``transaction()`` every later write raises until the block ends, with an error.

Readers (flag ``"r"``) where nothing can be created (a folder they may not write, a read-only
file system): see ``_connect_read_only``.

After ``os.fork()`` the child closes the connections it inherited and opens its own on first
use; a file the parent was writing in a transaction (or an open batch) at the fork can't be
written by the child (``LockedError``). Batches idle at the fork are committed just before it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import sqlite3
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, ClassVar, NoReturn, TypeVar

from persistdict.backends.base import (
    BackendBase,
    MissingTableError,
    check_commit_every,
    check_flag,
    check_table_name,
    fork_generation,
)
from persistdict.detect import SQLITE_HEADER, is_dbm_sqlite3
from persistdict.errors import (
    CorruptError,
    Error,
    LockedError,
    ReadOnlyError,
    closed_error,
    no_such,
)
from persistdict.fileio import check_side_file, resolve_data_path
from persistdict.locking import DEFAULT_TIMEOUT, check_timeout

__all__ = ["SqliteBackend"]

_T = TypeVar("_T")
_PAGE = 1000
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
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


def _uri(path: str, *params: str) -> str:
    # Percent-escape the whole path: in a file: URI "%41" means "A", "?" starts the query
    # and "#" the fragment, so "report%41.db" would otherwise open "reportA.db".
    return "file:" + urllib.parse.quote(os.path.abspath(path)) + "?" + "&".join(params)


def _is_wal_database(path: str) -> bool:
    # Bytes 18 and 19 of the header, the write and read format versions, are 2 in WAL mode.
    try:
        with open(path, "rb") as f:
            header = f.read(20)
    except OSError:
        return False
    return len(header) == 20 and header[18] == 2


def _read_only_file_system(folder: str) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # AttributeError: no statvfs on Windows
        return False


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
        immutable: with flag ``"r"``, read the file as SQLite's ``immutable``: no side files
            or locks, so it works in a folder this user may not write. Only for a database
            nothing writes while it is open: SQLite would then return wrong results. Chosen
            by itself on a read-only file system.
    """

    name: ClassVar[str] = "sqlite"
    path: str
    table: str
    schemes: ClassVar[tuple[str, ...]] = ("sqlite",)
    suffixes: ClassVar[tuple[str, ...]] = (".db", ".sqlite", ".sqlite3")
    native_transactions: ClassVar[bool] = True
    durability: ClassVar[str] = (
        "WAL; each write is committed before the call returns unless a writer opens it "
        "with commit_every=N; synchronous=NORMAL by default (survives a killed process), "
        "synchronous='FULL' survives power loss"
    )
    # Nothing reads a file migrate builds in its scratch folder, and every file is fsynced
    # before it is moved into place, so per-commit syncs would only slow the import down.
    scratch_options: ClassVar[Mapping[str, Any]] = {"synchronous": "OFF"}

    @staticmethod
    def sniff(head: bytes) -> bool:
        return head.startswith(SQLITE_HEADER)

    @classmethod
    def owns(cls, path: str) -> bool:
        # Python 3.13+'s dbm (shelve) writes SQLite files too, named as given (often .db).
        return not is_dbm_sqlite3(path)

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
        immutable: bool = False,
    ) -> None:
        self.table = check_table_name(table)
        if self.table.lower().startswith("sqlite_"):
            # SQLite reserves these for its own tables and would refuse only after creating
            # the file.
            raise ValueError(
                f"invalid table name {table!r}: names starting with 'sqlite_' are reserved by "
                "SQLite; pick another name"
            )
        check_commit_every(commit_every)
        sync = str(synchronous).upper()
        if sync not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {_SYNCHRONOUS}, not {synchronous!r}")
        check_flag(flag)
        if immutable and flag != "r":
            raise ValueError("immutable=True is for reading: it needs flag='r'")
        self.path = os.fspath(path)
        self.flag = flag
        self.read_only = flag == "r"
        self.commit_every = commit_every
        self.synchronous = sync
        self.timeout = check_timeout(timeout)
        #: Read straight from the main file, without side files or locks (flag "r" only).
        self.immutable = bool(immutable)
        self._mode = mode
        # The writes of the open commit_every batch, kept until it commits: when a fault
        # (disk full, I/O error) makes SQLite roll the batch back, they were already
        # acknowledged, so they are replayed (_lost) before anything else runs.
        self._batch: list[tuple[str, Any]] = []
        self._lost = False
        self._depth = 0  # nesting of transaction()
        self._aborted = ""  # why SQLite rolled back the transaction() block in progress
        self._count: int | None = None
        self._count_version = -1
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
        # The real path, refusing a symlink another user planted in a shared sticky folder;
        # SQLite is given it, so its -wal and -shm sit beside the database itself.
        real = os.fspath(resolve_data_path(self.path, create=self.flag in ("c", "n")))
        for side in ("-wal", "-shm", "-journal"):
            # SQLite opens these with O_NOFOLLOW too, but then says only "unable to open
            # database file"; name the link instead.
            check_side_file(Path(real + side))
        exists = os.path.exists(real)
        if not exists and self.flag in ("r", "w"):
            raise no_such("file", self.path)
        folder = os.path.dirname(os.path.abspath(self.path))
        if not exists and not os.path.isdir(folder):  # sqlite3 would say "unable to open"
            raise no_such(f"folder {folder!r} to hold the file", self.path, "create it first")
        if not exists:
            # SQLite would create it 0o644 less the umask, whatever mode= says: create it here
            # (an empty file is a valid empty database). Its -wal and -shm copy its mode.
            mode = 0o666 if self._mode is None else self._mode
            with contextlib.suppress(FileExistsError):
                os.close(os.open(real, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode))
        try:
            if self.read_only:
                cx = self._connect_read_only(real)
            else:
                cx = sqlite3.connect(
                    real, timeout=self.timeout, check_same_thread=False, isolation_level=None
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
            if self.flag in ("r", "w"):
                self._check_table_exists(cx)
            else:
                cx.execute(
                    f'CREATE TABLE IF NOT EXISTS "{self.table}" '
                    "(key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID"
                )
                if initial and self.flag == "n":
                    cx.execute(self._sql_clear)
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

    def _probe(self, path: str, *params: str) -> sqlite3.Connection:
        cx = sqlite3.connect(
            _uri(path, "mode=ro", *params),
            uri=True,
            timeout=self.timeout,
            check_same_thread=False,
            isolation_level=None,
        )
        try:
            # SQLite opens lazily: the first read is what finds a WAL database's side files.
            cx.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except BaseException:
            cx.close()
            raise
        return cx

    def _connect_read_only(self, real: str) -> sqlite3.Connection:
        """A read-only connection, also where this user may not create files.

        SQLite reads a WAL database only through its ``-wal`` and ``-shm`` files, creating them
        if missing (a cleanly closed database has neither). Where it can't (a folder this user
        may not write, a read-only file system) the read fails. On a read-only file system
        nothing can write the file, so it is then read as ``immutable``: straight from the
        main file, without side files or locks. Elsewhere a writer could start at any moment,
        so the error says what to do instead, unless the caller passed ``immutable=True``.
        """
        if self.immutable:
            return self._probe(real, "immutable=1")
        try:
            return self._probe(real)
        except sqlite3.OperationalError as exc:
            missing = [end for end in ("-wal", "-shm") if not os.path.exists(real + end)]
            folder = os.path.dirname(real)
            # os.access() also answers False on a read-only file system.
            if not missing or os.access(folder, os.W_OK) or not _is_wal_database(real):
                raise
            wal = real + "-wal"
            wal_empty = not os.path.exists(wal) or os.path.getsize(wal) == 0
            if wal_empty and _read_only_file_system(folder):
                self.immutable = True  # nothing can write on this mount: nothing can change
                return self._probe(real, "immutable=1")
            names = " and ".join(f"{os.path.basename(self.path)}{end}" for end in missing)
            message = (
                f"can't read {self.path!r}: it is a SQLite database in WAL mode, which SQLite "
                f"reads only with its side files beside it, and this user may not create "
                f"{names} in {folder!r} ({exc}). Read it while a writer has it open (the "
                "writer keeps those files), give this user write access to the folder, or copy "
                "the file somewhere writable"
            )
            error = PermissionError(
                errno.EACCES,
                f"{message}; if nothing writes the database while you read it, open it with "
                "immutable=True",
            )
            error.cli_message = message  # type: ignore[attr-defined]  # no such option there
            raise error from exc

    def _check_table_exists(self, cx: sqlite3.Connection) -> None:
        # As for a missing file: a mistyped table must not read as an empty dict (a backup
        # taken with `persistdict dump` would be empty). NOCASE: SQLite's names are.
        tables = [
            row[0]
            for row in cx.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite^_%' "
                "ESCAPE '^'"
            ).fetchall()
        ]
        if self.table.lower() not in (name.lower() for name in tables):
            # A damaged schema can hide a table that is there: say so rather than "no table".
            # A full scan, but only on this error path.
            problems = [row[0] for row in cx.execute("PRAGMA quick_check").fetchall()]
            if problems != ["ok"]:
                raise CorruptError(
                    f"{self.path!r} is damaged ({'; '.join(problems[:3])}); it was left "
                    "untouched. Restore a backup, or run `persistdict check` to see more"
                )
            raise MissingTableError(repr(self.path), self.table, tables)

    def _check_schema(self, cx: sqlite3.Connection) -> None:
        # fetchall(), not iteration: a cursor left open by an error would keep the file locked
        # (a closed connection lingers until its last statement is gone).
        columns = [row[1] for row in cx.execute(f'PRAGMA table_info("{self.table}")').fetchall()]
        if columns[:2] != ["key", "value"] or len(columns) != 2:
            found = (
                f"{self.path!r} has a table {self.table!r} that persistdict did not create "
                f"(columns: {', '.join(columns)}); it was left untouched. Pass"
            )
            raise CorruptError(
                f"{found} table= another name", cli_message=f"{found} --table another name"
            )

    @property
    def _conn(self) -> sqlite3.Connection:
        cx = self._cx
        if cx is None:
            raise closed_error(self.describe())
        if self._generation != fork_generation():
            # After fork the child must not use the parent's connection (SQLite's rule);
            # pending uncommitted writes belong to the parent and are not replayed here.
            _abandoned.append(cx)
            self._cx = None
            self._batch = []
            self._lost = False
            self._depth = 0
            return self._connect()
        if self._lost:
            self._replay(cx)  # reads too: they must see the acknowledged writes
        return cx

    def _translate(self, exc: Exception, note: str = "") -> Exception:
        """persistdict's error for a SQLite one; ``note`` is added to the message."""
        text = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and _is_locked(exc):
            return LockedError(
                f"{self.path!r} stayed locked by another connection for {self.timeout:g}s "
                f"({text}); retry, or pass a longer timeout={note}"
            )
        if "readonly" in text or "read-only" in text:
            return ReadOnlyError(f"{self.path!r} can't be written: {text}{note}")
        if isinstance(exc, UnicodeDecodeError) or (  # SQLite's own message held broken text
            isinstance(exc, sqlite3.DatabaseError) and any(sign in text for sign in _DAMAGED)
        ):
            return CorruptError(
                f"{self.path!r} is not a usable SQLite database ({text}); it was left "
                f"untouched. Restore a backup or check the path{note}"
            )
        if "unable to open" in text:
            return OSError(errno.EIO, f"can't open {self.path!r}: {text}{note}", self.path)
        if isinstance(exc, sqlite3.DataError):  # SQLITE_TOOBIG: nothing was written
            return ValueError(self._too_big("a key or value of this update", text))
        if "disk is full" in text:
            return OSError(errno.ENOSPC, f"{self.path!r}: {text}; free some space{note}")
        if "disk I/O error" in text:
            return OSError(errno.EIO, f"{self.path!r}: {text}{note}")
        if note:
            return Error(f"{self.path!r}: {text}{note}")
        return exc

    def _too_big(self, what: str, text: str) -> str:
        return (
            f"can't store {what} in {self.path!r}: it is longer than SQLite's length limit "
            f"(1,000,000,000 bytes in a default build: {text}); nothing was written. Keep "
            "very large data in files and store their names"
        )

    def _damaged(self, what: str) -> CorruptError:
        # The table's schema forbids this, so the file was damaged or edited by another program.
        found = f"{self.path!r} table {self.table!r} holds {what}: the file is damaged"
        check = f"`persistdict check {shlex.quote(self.path)}`"
        return CorruptError(
            f"{found}. Run d.backend.check() or {check} (PRAGMA integrity_check) to see more, "
            "and restore a backup",
            cli_message=f"{found}. Run {check} to see more, and restore a backup",
        )

    def _errors(self) -> _Translating:
        return _Translating(self)

    def _raise(self, exc: Exception, note: str = "") -> NoReturn:
        translated = self._translate(exc, note)
        if translated is exc:
            raise exc
        raise translated from exc

    def _failed(self, cx: sqlite3.Connection, exc: sqlite3.Error) -> NoReturn:
        """Raise a failed write's error, after noting what SQLite undid with it."""
        self._count = None  # the statement, or the whole transaction, was undone
        note = ""
        if not cx.in_transaction:  # a fault SQLite answers by rolling everything back
            if self._depth:
                self._aborted = str(exc)
                note = (
                    "; SQLite rolled back the whole transaction() block, so none of its writes "
                    "are kept and every further write in it raises: leave the block"
                )
            elif self._batch:
                self._lost = True
                note = self._kept()
        self._raise(exc, note)

    def _kept(self) -> str:
        return (
            f"; the {len(self._batch)} earlier writes of the commit_every batch are kept in "
            "memory and are committed by the next write, flush() or close()"
        )

    def _replay(self, cx: sqlite3.Connection) -> None:
        # Redo the rolled-back batch in a transaction of its own; on failure it stays to redo.
        try:
            if not cx.in_transaction:
                self._begin(cx)
            for sql, params in self._batch:
                cx.execute(sql, params)
        except sqlite3.Error as exc:
            self._count = None
            if cx.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    cx.execute("ROLLBACK")
            self._raise(exc, self._kept())
        self._lost = False
        self._count = None

    def _settle(self, cx: sqlite3.Connection) -> None:
        """Commit the open commit_every batch (raising through ``_failed``)."""
        try:
            if self._lost:
                self._replay(cx)
            if cx.in_transaction:
                cx.execute("COMMIT")
        except sqlite3.Error as exc:
            self._failed(cx, exc)
        self._batch.clear()

    def _block_aborted(self) -> Error:
        return Error(
            f"{self.path!r}: SQLite rolled back this transaction() block after an error "
            f"({self._aborted or 'see the error raised earlier in the block'}); none of its "
            "writes were kept. Leave the block and run it again"
        )

    # Writes and batching.

    def _begin(self, cx: sqlite3.Connection) -> None:
        # IMMEDIATE: take the write lock now, so a read-then-write never has to upgrade.
        cx.execute("BEGIN IMMEDIATE")

    def _write(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        self.check_writable()
        cx = self._conn
        try:  # not `with self._errors()`: this runs on every write, and try costs nothing
            if self._depth:
                if not cx.in_transaction:
                    # SQLite ended the block's transaction; run alone, this write would
                    # commit on its own, outside the block.
                    raise self._block_aborted()
                return cx.execute(sql, params)
            if self.commit_every == 0:
                return cx.execute(sql, params)
            if not cx.in_transaction:
                self._begin(cx)
            cur = cx.execute(sql, params)
            self._batch.append((sql, params))
            if len(self._batch) >= self.commit_every:
                try:
                    cx.execute("COMMIT")
                except sqlite3.Error:
                    if not cx.in_transaction:
                        self._batch.pop()  # this call fails whole; the earlier writes are kept
                    raise
                self._batch.clear()
            return cur
        except sqlite3.Error as exc:
            if isinstance(exc, sqlite3.DataError) and params:  # SQLITE_TOOBIG: nothing written
                raise ValueError(self._too_big(f"key {params[0][:60]!r}", str(exc))) from exc
            self._failed(cx, exc)

    def get(self, key: str) -> Any:
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
        try:
            return self._conn.execute(self._sql_has, (key,)).fetchone() is not None
        except UnicodeEncodeError:
            return False
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            self._raise(exc)

    def set(self, key: str, value: Any) -> None:
        try:
            self._write(self._sql_set, (key, value))
        except UnicodeEncodeError as exc:  # raised binding the parameters: nothing was run
            raise self._not_utf8(key, value, exc) from None
        self._count = None

    def _not_utf8(self, key: str | None, value: Any, exc: UnicodeEncodeError) -> ValueError:
        """SQLite stores text as UTF-8, which has no form for a lone surrogate."""
        if key is None:
            what = "a key or value of this update"
        elif exc.object is key:
            what = f"key {key!r}"
        else:
            what = f"the value for key {key!r}"
        return ValueError(
            f"can't store {what} in {self.path!r} as UTF-8 ({exc.reason}: {exc.object!r}); "
            "nothing was written. Encode such text yourself (for instance with the "
            "'surrogateescape' error handler) or store bytes with a serializer that makes them"
        )

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
        if self._depth:
            if not cx.in_transaction:
                raise self._block_aborted()
            try:
                cx.executemany(self._sql_set, items)
            except sqlite3.Error as exc:
                self._failed(cx, exc)
            except UnicodeEncodeError as exc:
                raise self._not_utf8(None, None, exc) from None
            self._count = None
            return
        self._settle(cx)  # a commit_every batch commits first: keep it to its N writes
        self._count = None
        try:
            self._begin(cx)
            cx.executemany(self._sql_set, items)
            cx.execute("COMMIT")
        except BaseException as exc:
            if cx.in_transaction:  # not when SQLite already rolled back
                with contextlib.suppress(sqlite3.Error):
                    cx.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                self._raise(exc)
            if isinstance(exc, UnicodeEncodeError):
                raise self._not_utf8(None, None, exc) from None
            raise

    def clear(self) -> None:
        self._write(self._sql_clear)
        self._count = 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.check_writable()
        cx = self._conn
        if self._depth == 0:
            self._settle(cx)  # a commit_every batch is open: it commits first
            self._aborted = ""
            with self._errors():
                self._begin(cx)
        else:
            if not cx.in_transaction:
                raise self._block_aborted()
            with self._errors():
                cx.execute(f"SAVEPOINT pd_{self._depth}")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            self._count = None
            if not self._owns(cx):
                raise  # a forked child unwinding the parent's transaction: not its to end
            if cx.in_transaction:  # else SQLite already rolled the whole block back
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
        if not cx.in_transaction:  # the caller caught the error that ended it, and went on
            self._count = None
            raise self._block_aborted()
        try:
            cx.execute("COMMIT" if self._depth == 0 else f"RELEASE pd_{self._depth}")
        except sqlite3.Error as exc:
            # Left open, the block's writes would be committed by whatever runs next.
            self._count = None
            if self._depth == 0 and cx.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    cx.execute("ROLLBACK")
            self._raise(exc, "; none of the transaction() block's writes were kept")

    # Reads that stream.

    def _pages(self, first: str, following: str) -> Iterator[list[Any]]:
        # Keyset pages rather than one open cursor: no read transaction stays open while the
        # caller works between steps (which would stall WAL checkpoints), memory stays flat,
        # and writes during the loop are allowed. Each key present throughout is seen once.
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
        if self._cx is None or self._depth:
            return
        self._settle(self._conn)

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
        if cx.in_transaction or self._lost:
            # A failed commit must not stop the fork; the child then reports the open batch.
            with contextlib.suppress(sqlite3.Error, OSError, Error):
                self._settle(cx)

    def close(self) -> None:
        cx = self._cx
        if cx is None:
            return
        if self._generation != fork_generation():
            _abandoned.append(cx)
            self._cx = None
            return
        if cx.in_transaction or self._lost:
            # If this commit fails the dict stays open, so pending writes can be retried.
            self._settle(cx)
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
        if self.immutable:
            ro += " (immutable: nothing may write it while open)"
        return f"sqlite {self.path!r} table {self.table!r}{ro}"

    # For the command line and migrate (see BackendBase).

    def tables(self) -> list[str]:
        """The tables of this file that have ``key`` and ``value`` columns, sorted."""
        from persistdict.migrate.sqlite_sources import connect_read_only, key_value_tables

        cx = connect_read_only(self.path)
        try:
            return sorted(key_value_tables(cx))
        finally:
            cx.close()

    @classmethod
    def has_table(cls, path: str, table: str) -> bool:
        from persistdict.migrate.sqlite_sources import connect_read_only

        try:
            cx = connect_read_only(path)
        except (OSError, CorruptError):
            return False  # opening it reports what is wrong
        try:
            row = cx.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).fetchone()
            return row is not None
        except sqlite3.Error:
            return False
        finally:
            cx.close()

    @classmethod
    def drop_empty_table(cls, path: str, table: str) -> None:
        with contextlib.suppress(sqlite3.Error):
            cx = sqlite3.connect(path, isolation_level=None)
            try:
                if cx.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] == 0:
                    cx.execute(f'DROP TABLE "{table}"')
            finally:
                cx.close()
