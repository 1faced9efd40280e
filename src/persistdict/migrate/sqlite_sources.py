"""Sources in SQLite files: sqlitedict tables, the original module's tables, diskcache."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import stat
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from persistdict.detect import SQLITE_HEADER
from persistdict.errors import CorruptError, no_such
from persistdict.migrate.base import Source, pickle_format

__all__ = [
    "DiskcacheSource",
    "SqliteTableSource",
    "begin_read",
    "choose_table",
    "connect_read_only",
    "diskcache_database",
    "end_read",
    "key_value_tables",
    "sqlite_errors",
    "sqlitedict_schema",
]


def _read_only_media(path: str) -> bool:
    try:
        return bool(os.statvfs(os.path.dirname(os.path.abspath(path))).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows): assume writable media
        return False


def is_pickled_cell(cell: object) -> bool:
    """Whether a sqlitedict/persistdict-0 value cell holds a pickle: a blob starting like one.

    The one test both for refusing an untrusted table (run inside SQLite over every row, see
    ``_register_predicates``) and for choosing to unpickle a row, so the two can't
    disagree about any cell.
    """
    return isinstance(cell, bytes) and pickle_format(cell)


def _register_predicates(cx: sqlite3.Connection) -> None:
    # The refusal queries call the Python predicates themselves, not an SQL rewording of
    # them: SQL's `raw = 0` and Python's `not raw` disagree about NULL, '' and X''.
    cx.create_function("persistdict_is_pickle", 1, is_pickled_cell, deterministic=True)
    cx.create_function(
        "persistdict_diskcache_pickled", 2, _diskcache_row_pickled, deterministic=True
    )


def connect_read_only(path: str) -> sqlite3.Connection:
    """Open a SQLite file for reading only, with SQLite's own locking; errors name the file.

    Reads inside one transaction (``begin_read``) then see one consistent state of the
    file even while other processes write it and checkpoint its WAL. The connection never
    writes (``mode=ro``, or ``query_only`` below). Two cases need care:

    * a WAL database closed cleanly (no ``-wal`` beside it): a reader must create the
      ``-wal``/``-shm`` files to take its locks, and a ``mode=ro`` connection would leave them
      behind. A read-write connection in ``query_only`` mode removes them when it closes
      last, as every SQLite program does, and changes no byte of the database;
    * a file on read-only media (a read-only mount): nothing can write it, and SQLite
      can't create the files it locks with, so it is read with ``immutable=1``, which takes
      no locks. That is the only place ``immutable`` is used: on a file another process may
      write, checkpoints would rewrite pages under an immutable reader.
    """
    if not os.path.isfile(path):
        raise no_such("file", path, "check the path")
    with open(path, "rb") as f:
        header = f.read(20)
    uri = "file:" + urllib.parse.quote(os.path.abspath(path))
    clean_wal = len(header) == 20 and header[18] == 2 and not os.path.exists(path + "-wal")
    if _read_only_media(path):
        uri += "?mode=ro&immutable=1"
    elif not clean_wal:
        uri += "?mode=ro"
    else:
        _check_can_lock(path)
    try:
        cx = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    except sqlite3.DatabaseError as exc:
        raise CorruptError(f"{path!r} is not a readable SQLite database ({exc})") from exc
    try:
        cx.execute("PRAGMA query_only = ON")
        cx.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        cx.close()
        raise CorruptError(f"{path!r} is not a readable SQLite database ({exc})") from exc
    _register_predicates(cx)
    return cx


def _check_can_lock(path: str) -> None:
    # The -wal and -shm files a reader creates belong to it: made by a user who can't write
    # the database (or made in a folder it can't write), they would be left behind and block
    # the owner's next writer. Reading without them is only safe where nothing can write.
    folder = os.path.dirname(os.path.abspath(path))
    if not (os.access(path, os.W_OK) and os.access(folder, os.W_OK)):
        raise PermissionError(
            errno.EACCES,
            f"can't read {path!r} safely: it is a WAL database, and a reader that may meet "
            "another process writing it needs -wal and -shm files beside it, which this user "
            f"can't make there (it can't write the file or {folder!r}). Run as the file's "
            "owner, or copy the file while nothing writes it and read the copy",
            path,
        )


def begin_read(cx: sqlite3.Connection) -> None:
    """Start the read transaction every later query of ``cx`` runs in (one snapshot)."""
    cx.execute("BEGIN")
    cx.execute("SELECT count(*) FROM sqlite_master").fetchone()


def end_read(cx: sqlite3.Connection) -> None:
    """End the read transaction and close ``cx``."""
    try:
        if cx.in_transaction:
            cx.execute("COMMIT")
    except sqlite3.Error:
        pass  # a read transaction has nothing to keep; closing ends it all the same
    finally:
        cx.close()


@contextmanager
def sqlite_errors(label: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.DatabaseError as exc:
        raise CorruptError(
            f"{label} can't be read ({exc}); the file may be truncated or damaged. "
            "Nothing was written"
        ) from exc


def key_value_tables(cx: sqlite3.Connection) -> dict[str, str]:
    """Tables having ``key`` and ``value`` columns, mapped to their ``CREATE`` statement."""
    found = {}
    rows = cx.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall()
    for name, sql in rows:
        columns = {row[1] for row in cx.execute(f'PRAGMA table_info("{_quoted(name)}")')}
        if {"key", "value"} <= columns:
            found[name] = sql or ""
    return found


def _quoted(name: str) -> str:
    return name.replace('"', '""')


def sqlitedict_schema(name: str) -> str:
    """The exact ``CREATE TABLE`` text sqlitedict 2.x leaves in ``sqlite_master``."""
    return f'CREATE TABLE "{_quoted(name)}" (key TEXT PRIMARY KEY, value BLOB)'


def choose_table(path: str, tables: dict[str, str], wanted: str | None, default: str) -> str:
    """The table to read: the one asked for, else ``default``, else the only one."""
    names = ", ".join(sorted(tables)) or "none"
    if wanted is not None:
        if wanted not in tables:
            raise ValueError(
                f"{path!r} has no key/value table {wanted!r}; its key/value tables: {names}. "
                "Pick one with --src-table (Python: src_table=)"
            )
        return wanted
    if default in tables:
        return default
    if len(tables) == 1:
        return next(iter(tables))
    if not tables:
        raise ValueError(f"{path!r} holds no table with key and value columns")
    raise ValueError(
        f"{path!r} holds several key/value tables ({names}); pick one with --src-table "
        "(Python: src_table=)"
    )


class SqliteTableSource(Source):
    """A ``(key, value)`` table: sqlitedict's (pickled values, or JSON text when it was
    opened with ``encode=json.dumps``), or a table of the original persistdict module (JSON
    text). Each value decodes by what it holds: a pickle blob or JSON text."""

    def __init__(self, path: str, kind: str, table: str | None, default_table: str) -> None:
        self.kind = kind
        self.path = path
        self._cx = connect_read_only(path)
        try:
            with sqlite_errors(repr(path)):
                # Every query from here to close() runs in this one read transaction: the
                # table chosen, the pickle check, the count and the rows are one state.
                begin_read(self._cx)
                self.table = choose_table(path, key_value_tables(self._cx), table, default_table)
                q = f'"{_quoted(self.table)}"'
                self._select = f"SELECT key, value FROM {q}"
                self._count = f"SELECT count(*) FROM {q}"
                example = self._cx.execute(
                    f"SELECT key FROM {q} WHERE persistdict_is_pickle(value) LIMIT 1"
                ).fetchone()
        except BaseException:
            end_read(self._cx)
            raise
        super().__init__(f"{kind} {path!r} table {self.table!r}")
        if example is not None:
            self.needs_pickle = True
            self.pickle_reason = f"its values are pickles (key {example[0]!r} for one)"

    def count(self) -> int | None:
        with sqlite_errors(self.label):
            return int(self._cx.execute(self._count).fetchone()[0])

    def items(self) -> Iterator[tuple[Any, Any]]:
        with sqlite_errors(self.label):
            for key, cell in self._cx.execute(self._select):
                yield key, self._decode(key, cell)

    def _decode(self, key: Any, cell: Any) -> Any:
        if is_pickled_cell(cell):
            return self._unpickle(key, cell)
        if isinstance(cell, bytes):
            try:
                cell = cell.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CorruptError(
                    f"{self.label}: the value of key {key!r} is neither a pickle nor JSON text"
                ) from exc
        if not isinstance(cell, str):
            return cell  # a number stored by hand: SQLite gives it back as such
        try:
            return json.loads(cell)
        except json.JSONDecodeError as exc:
            raise CorruptError(
                f"{self.label}: the value of key {key!r} is not JSON ({exc.msg} at "
                f"position {exc.pos})"
            ) from exc

    def close(self) -> None:
        end_read(self._cx)


# diskcache ----------------------------------------------------------------------------------

# Value modes of diskcache.core (5.x): where and how the Cache table keeps a value.
_MODE_RAW, _MODE_BINARY, _MODE_TEXT, _MODE_PICKLE = 1, 2, 3, 4


def diskcache_key_pickled(raw: object) -> bool:
    """Whether diskcache pickled a row's key. diskcache writes ``raw`` as 1 for a key stored
    as it is and 0 for a pickled one; anything else (NULL, ``''``, ``X''``...) is not from
    diskcache and counts as pickled, so an untrusted cache holding it is refused."""
    return not (type(raw) is int and raw == 1)


def diskcache_value_pickled(mode: object) -> bool:
    """Whether a diskcache row's value is read by unpickling (mode 4, ``MODE_PICKLE``)."""
    return type(mode) in (int, float) and mode == _MODE_PICKLE


def _diskcache_row_pickled(raw: object, mode: object) -> bool:
    return diskcache_key_pickled(raw) or diskcache_value_pickled(mode)


_DISKCACHE_COLUMNS = {"key", "raw", "mode", "filename", "value", "expire_time"}


def _diskcache_db_path(path: str) -> str:
    return os.path.join(path, "cache.db") if os.path.isdir(path) else path


def _has_diskcache_schema(cx: sqlite3.Connection) -> bool:
    names = {row[0] for row in cx.execute("SELECT name FROM sqlite_master")}
    if not {"Cache", "Settings"} <= names:
        return False
    return {row[1] for row in cx.execute("PRAGMA table_info(Cache)")} >= _DISKCACHE_COLUMNS


def diskcache_database(path: str) -> str | None:
    """The ``cache.db`` of a diskcache folder (or the file itself), if ``path`` is one."""
    db = _diskcache_db_path(path)
    try:
        with open(db, "rb") as f:
            if f.read(16) != SQLITE_HEADER:
                return None
        cx = connect_read_only(db)
    except (OSError, CorruptError):
        return None
    try:
        return db if _has_diskcache_schema(cx) else None
    except sqlite3.DatabaseError:
        return None
    finally:
        cx.close()


class DiskcacheSource(Source):
    """A diskcache ``Cache``/``Index`` folder, read through its ``cache.db``.

    Values diskcache kept in files beside the database (large ``str``/``bytes`` and large
    pickles) are read from there. Expired entries are left out and counted.
    """

    kind = "diskcache"
    left_out_reason = "expired diskcache entries"

    def __init__(self, path: str) -> None:
        db = _diskcache_db_path(path)
        self.folder = os.path.dirname(os.path.abspath(db))
        super().__init__(f"diskcache {path!r}")
        self._cx = connect_read_only(db)
        try:
            with sqlite_errors(self.label):
                begin_read(self._cx)  # one read transaction until close(), as above
                is_diskcache = _has_diskcache_schema(self._cx)
        except BaseException:
            end_read(self._cx)
            raise
        if not is_diskcache:
            end_read(self._cx)
            raise ValueError(
                f"{path!r} is not a diskcache folder: it needs a cache.db holding diskcache's "
                "Cache and Settings tables"
            )
        self._now = time.time()
        live = "(expire_time IS NULL OR expire_time > ?)"
        self._select = (
            f"SELECT key, raw, mode, filename, value FROM Cache WHERE {live} ORDER BY rowid"
        )
        try:
            with sqlite_errors(self.label):
                self._live = int(
                    self._cx.execute(
                        f"SELECT count(*) FROM Cache WHERE {live}", (self._now,)
                    ).fetchone()[0]
                )
                total = int(self._cx.execute("SELECT count(*) FROM Cache").fetchone()[0])
                example = self._cx.execute(
                    "SELECT key, raw FROM Cache WHERE persistdict_diskcache_pickled(raw, mode) "
                    "LIMIT 1"
                ).fetchone()
        except BaseException:
            end_read(self._cx)
            raise
        self.left_out = total - self._live
        if example is not None:
            self.needs_pickle = True
            what = "key" if diskcache_key_pickled(example[1]) else "value"
            self.pickle_reason = f"it stores objects as pickles (a pickled {what} for one)"

    def count(self) -> int | None:
        return self._live

    def items(self) -> Iterator[tuple[Any, Any]]:
        with sqlite_errors(self.label):
            for db_key, raw, mode, filename, cell in self._cx.execute(self._select, (self._now,)):
                if not diskcache_key_pickled(raw):
                    key = bytes(db_key) if isinstance(db_key, bytes) else db_key
                elif type(raw) is int and raw == 0 and isinstance(db_key, bytes):
                    key = self._unpickle(db_key, db_key, " (a pickled key)")
                else:
                    raise CorruptError(
                        f"{self.label}: the row of key {db_key!r} has raw flag {raw!r}; "
                        "diskcache writes 0 or 1 there (and a pickled key as a blob), "
                        "so the cache.db is damaged or was not written by diskcache"
                    )
                yield key, self._value(key, mode, filename, cell)

    def _value(self, key: Any, mode: int, filename: str | None, cell: Any) -> Any:
        if mode == _MODE_RAW:
            return bytes(cell) if isinstance(cell, bytes) else cell
        data: bytes
        if filename is not None and cell is None:
            data = self._value_file(key, filename)
        else:
            data = bytes(cell)
        if mode == _MODE_BINARY:
            return data
        if mode == _MODE_TEXT:
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CorruptError(
                    f"{self.label}: the text value of key {key!r} is not UTF-8"
                ) from exc
        if diskcache_value_pickled(mode):
            return self._unpickle(key, data)
        raise CorruptError(f"{self.label}: key {key!r} has unknown value mode {mode!r}")

    def _value_file(self, key: Any, filename: object) -> bytes:
        """The bytes of the file a row names, read only if it is a regular file inside the
        cache folder: a crafted cache.db must not make an import copy ``~/.ssh/id_rsa``."""

        def refused(problem: str) -> CorruptError:
            return CorruptError(
                f"{self.label}: the value of key {key!r} is said to be in the file "
                f"{filename!r}, {problem}. diskcache only writes regular files inside its "
                "folder, so this cache.db is damaged or was crafted; nothing was read from "
                "that file and nothing was written"
            )

        if not isinstance(filename, str) or not filename or "\0" in filename:
            raise refused("which is not a file name")
        parts = filename.replace("\\", "/").split("/")
        if os.path.isabs(filename) or os.path.splitdrive(filename)[0] or ".." in parts:
            raise refused("which is outside the cache folder")
        root = os.path.realpath(self.folder)
        full = os.path.realpath(os.path.join(root, filename))
        if os.path.commonpath([root, full]) != root:
            raise refused("which is outside the cache folder (through a symlink)")
        # O_NOFOLLOW: the last part can't have become a symlink since realpath looked;
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever.
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(full, flags | getattr(os, "O_BINARY", 0))
        except OSError as exc:
            raise CorruptError(
                f"{self.label}: the value of key {key!r} lives in {full!r}, which can't be "
                f"read ({exc.strerror or exc})"
            ) from exc
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise refused("which is not a regular file")
            return f.read()

    def close(self) -> None:
        end_read(self._cx)
