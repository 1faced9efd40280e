"""Readers for the stores people migrate from, each opened read-only.

A reader yields ``(key, value)`` pairs already decoded into Python objects, in the source's
own order, streaming (one SQLite cursor, one dbm key at a time). Keys come out as the source
holds them: mostly ``str``, but diskcache and sqlitedict also hold ``int``, ``bytes`` and
pickled keys, which :func:`persistdict.migrate.copy` deals with. Nothing here writes: SQLite
files are opened with ``mode=ro``, dbm files with flag ``"r"``.
"""

from __future__ import annotations

import dbm
import json
import os
import pickle
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import persistdict
from persistdict.detect import detect_backend
from persistdict.errors import CorruptError, Error
from persistdict.urls import split_scheme, url_path

__all__ = [
    "DiskcacheSource",
    "NativeSource",
    "PersistDict0JsonSource",
    "ShelveSource",
    "Source",
    "SqliteTableSource",
    "UntrustedPickleError",
    "connect_read_only",
    "pickle_format",
    "refusal",
]

SQLITE_HEADER = b"SQLite format 3\x00"


class UntrustedPickleError(Error):
    """The source holds pickles and the caller did not say it trusts them."""


def refusal(label: str, reason: str) -> str:
    """The message refusing to read pickles: why it matters and how to go ahead."""
    return (
        f"{label} needs unpickling: {reason}. Unpickling runs code chosen by whoever wrote "
        "the data, so it is refused by default. If you trust this source, pass --trust-pickle "
        "(Python: trust_pickle=True)"
    )


def pickle_format(head: bytes) -> bool:
    """Whether bytes start like a pickle of protocol 2 or later (what every library here
    writes: sqlitedict and shelve use the highest or default protocol)."""
    return head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= pickle.HIGHEST_PROTOCOL


class Source:
    """What :func:`~persistdict.migrate.copy` reads from. Subclasses fill in the hooks."""

    kind = "source"
    #: Reading this source unpickles data, which runs code chosen by whoever wrote it.
    needs_pickle = False
    #: Why it needs pickle, with one key as an example, for the refusal message.
    pickle_reason = ""
    #: Entries deliberately not copied (diskcache's expired items), counted for the summary.
    left_out = 0
    left_out_reason = ""

    def __init__(self, label: str) -> None:
        self.label = label

    def count(self) -> int | None:
        """How many items there are, if the source can tell cheaply."""
        return None

    def items(self) -> Iterator[tuple[Any, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _unpickle(self, key: Any, data: bytes, where: str = "") -> Any:
        try:
            return pickle.loads(data)
        except Exception as exc:  # a bad or truncated pickle can raise almost anything
            raise CorruptError(
                f"{self.label}: can't unpickle the value of key {key!r}{where} "
                f"({type(exc).__name__}: {exc}); the source may be truncated or need a "
                "module that is not installed"
            ) from exc


# SQLite files -------------------------------------------------------------------------------


def connect_read_only(path: str) -> sqlite3.Connection:
    """Open a SQLite file so that nothing can be written to it; errors name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(2, f"no such file: {path!r}", path)
    with open(path, "rb") as f:
        header = f.read(20)
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
    if len(header) == 20 and header[18] == 2 and not os.path.exists(path + "-wal"):
        # A WAL database closed cleanly: everything is in the main file. Reading it with
        # mode=ro alone would leave new -wal and -shm files beside it; immutable reads
        # without them. (With a -wal present another program may be using it: plain ro.)
        uri += "&immutable=1"
    try:
        cx = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        cx.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise CorruptError(f"{path!r} is not a readable SQLite database ({exc})") from exc
    return cx


@contextmanager
def _sqlite_errors(label: str) -> Iterator[None]:
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
                f"{path!r} has no key/value table {wanted!r}; its key/value tables: {names}"
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
            with _sqlite_errors(repr(path)):
                self.table = choose_table(path, key_value_tables(self._cx), table, default_table)
                q = f'"{_quoted(self.table)}"'
                self._select = f"SELECT key, value FROM {q}"
                self._count = f"SELECT count(*) FROM {q}"
                example = self._cx.execute(
                    f"SELECT key FROM {q} WHERE typeof(value) = 'blob' "
                    "AND substr(value, 1, 1) = X'80' LIMIT 1"
                ).fetchone()
        except BaseException:
            self._cx.close()
            raise
        super().__init__(f"{kind} {path!r} table {self.table!r}")
        if example is not None:
            self.needs_pickle = True
            self.pickle_reason = f"its values are pickles (key {example[0]!r} for one)"

    def count(self) -> int | None:
        with _sqlite_errors(self.label):
            return int(self._cx.execute(self._count).fetchone()[0])

    def items(self) -> Iterator[tuple[Any, Any]]:
        with _sqlite_errors(self.label):
            # One cursor inside one read transaction: a consistent snapshot of the table.
            self._cx.execute("BEGIN")
            try:
                for key, cell in self._cx.execute(self._select):
                    yield key, self._decode(key, cell)
            finally:
                self._cx.execute("ROLLBACK")

    def _decode(self, key: Any, cell: Any) -> Any:
        if isinstance(cell, bytes):
            if pickle_format(cell):
                return self._unpickle(key, cell)
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
        self._cx.close()


# diskcache ----------------------------------------------------------------------------------

# Value modes of diskcache.core (5.x): where and how the Cache table keeps a value.
_MODE_RAW, _MODE_BINARY, _MODE_TEXT, _MODE_PICKLE = 1, 2, 3, 4


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
            with _sqlite_errors(self.label):
                is_diskcache = _has_diskcache_schema(self._cx)
        except BaseException:
            self._cx.close()
            raise
        if not is_diskcache:
            self._cx.close()
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
            with _sqlite_errors(self.label):
                self._live = int(
                    self._cx.execute(
                        f"SELECT count(*) FROM Cache WHERE {live}", (self._now,)
                    ).fetchone()[0]
                )
                total = int(self._cx.execute("SELECT count(*) FROM Cache").fetchone()[0])
                example = self._cx.execute(
                    f"SELECT key, raw FROM Cache WHERE (raw = 0 OR mode = {_MODE_PICKLE}) LIMIT 1"
                ).fetchone()
        except BaseException:
            self._cx.close()
            raise
        self.left_out = total - self._live
        if example is not None:
            self.needs_pickle = True
            what = "key" if example[1] == 0 else "value"
            self.pickle_reason = f"it stores objects as pickles (a pickled {what} for one)"

    def count(self) -> int | None:
        return self._live

    def items(self) -> Iterator[tuple[Any, Any]]:
        with _sqlite_errors(self.label):
            self._cx.execute("BEGIN")
            try:
                for db_key, raw, mode, filename, cell in self._cx.execute(
                    self._select, (self._now,)
                ):
                    if raw:
                        key = bytes(db_key) if isinstance(db_key, bytes) else db_key
                    else:
                        key = self._unpickle(db_key, bytes(db_key), " (a pickled key)")
                    yield key, self._value(key, mode, filename, cell)
            finally:
                self._cx.execute("ROLLBACK")

    def _value(self, key: Any, mode: int, filename: str | None, cell: Any) -> Any:
        if mode == _MODE_RAW:
            return bytes(cell) if isinstance(cell, bytes) else cell
        data: bytes
        if filename is not None and cell is None:
            full = os.path.join(self.folder, filename)
            try:
                with open(full, "rb") as f:
                    data = f.read()
            except OSError as exc:
                raise CorruptError(
                    f"{self.label}: the value of key {key!r} lives in {full!r}, which can't be "
                    f"read ({exc.strerror or exc})"
                ) from exc
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
        if mode == _MODE_PICKLE:
            return self._unpickle(key, data)
        raise CorruptError(f"{self.label}: key {key!r} has unknown value mode {mode!r}")

    def close(self) -> None:
        self._cx.close()


# shelve -------------------------------------------------------------------------------------


class ShelveSource(Source):
    """A :mod:`shelve` file: the stdlib ``dbm`` that ``dbm.whichdb`` names, pickled values."""

    kind = "shelve"
    needs_pickle = True

    def __init__(self, path: str) -> None:
        which = dbm.whichdb(path)
        if which is None:
            raise FileNotFoundError(2, f"no dbm database at {path!r}", path)
        if which == "":
            raise CorruptError(f"{path!r} is not a dbm database that this Python can read")
        super().__init__(f"shelve {path!r}")
        self.pickle_reason = "shelve stores every value as a pickle"
        try:
            self._db: Any = dbm.open(path, "r")  # noqa: SIM115 - closed by close()
        except Exception as exc:  # the dbm modules raise their own error types, or worse
            raise CorruptError(f"can't open the shelve file {path!r} ({exc})") from exc

    def count(self) -> int | None:
        return len(self._db)

    def items(self) -> Iterator[tuple[Any, Any]]:
        for raw_key in self._db.keys():  # noqa: SIM118 - dbm objects are not iterable everywhere
            try:
                key: Any = raw_key.decode("utf-8")  # shelve's key encoding
            except UnicodeDecodeError:
                key = raw_key
            try:
                data = self._db[raw_key]
            except Exception as exc:
                raise CorruptError(f"{self.label}: can't read key {key!r} ({exc})") from exc
            yield key, self._unpickle(key, data)

    def close(self) -> None:
        self._db.close()


# The original persistdict module's JSON file ------------------------------------------------


class PersistDict0JsonSource(Source):
    """A JSON file written by the original module: every value is a JSON *string* holding
    the JSON of the real value (``{"cfg": "{\\"root\\": \\"/srv\\"}"}``)."""

    kind = "persistdict-0"

    def __init__(self, path: str) -> None:
        super().__init__(f"persistdict-0 JSON {path!r}")
        with open(path, "rb") as f:
            raw = f.read()
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorruptError(
                f"{path!r} is not valid JSON ({exc}); it may be truncated. Nothing was written"
            ) from exc
        if not isinstance(data, dict):
            raise CorruptError(f"{path!r} holds a JSON {type(data).__name__}, not an object")
        self._data: dict[str, Any] = data

    def count(self) -> int | None:
        return len(self._data)

    def items(self) -> Iterator[tuple[Any, Any]]:
        for key, text in self._data.items():
            if not isinstance(text, str):
                raise CorruptError(
                    f"{self.label}: the value of key {key!r} is a JSON {type(text).__name__}, "
                    "not a string holding JSON, so this is not a persistdict-0 file; convert it "
                    "without --from (it is an ordinary JSON file)"
                )
            try:
                yield key, json.loads(text)
            except json.JSONDecodeError as exc:
                raise CorruptError(
                    f"{self.label}: the value of key {key!r} is a string that is not JSON "
                    f"({exc.msg}), so this is not a persistdict-0 file"
                ) from exc


# Anything persistdict itself opens ----------------------------------------------------------


class NativeSource(Source):
    """A target :func:`persistdict.open` reads, opened with ``flag="r"``. A PermaDict state
    file is one of these: a JSON object, ``key,value`` CSV rows, or a pickled dict."""

    def __init__(
        self,
        target: str,
        *,
        kind: str = "persistdict",
        backend: str = "auto",
        fmt: str | None = None,
        table: str | None = None,
        trust_pickle: bool = False,
    ) -> None:
        self.kind = kind
        chosen = detect_backend(target, fmt) if backend == "auto" else backend
        if chosen == "pickle" and not trust_pickle:
            # The pickle backend unpickles the whole file as it opens: refuse before that.
            raise UntrustedPickleError(refusal(f"pickle file {target!r}", "it is a pickle file"))
        if chosen == "sqlite":
            _require_table(target, table or "items")
        options: dict[str, Any] = {"backend": chosen}
        if table is not None:
            options["table"] = table
        self._dict = persistdict.open(target, "r", **options)
        super().__init__(self._dict.backend.describe().replace(" read-only", ""))

    def count(self) -> int | None:
        return len(self._dict)

    def items(self) -> Iterator[tuple[Any, Any]]:
        return iter(self._dict.items())

    def close(self) -> None:
        self._dict.close()


def _require_table(target: str, table: str) -> None:
    # A missing table reads as an empty dict; for a copy that would silently copy nothing.
    path = url_path(target) if split_scheme(target)[0] else target
    cx = connect_read_only(path)
    try:
        with _sqlite_errors(repr(path)):
            tables = key_value_tables(cx)
    finally:
        cx.close()
    if table not in tables:
        names = ", ".join(sorted(tables)) or "none"
        raise ValueError(
            f"{path!r} has no table {table!r}; its key/value tables: {names}. Pick one with "
            "--src-table (Python: src_table=)"
        )
