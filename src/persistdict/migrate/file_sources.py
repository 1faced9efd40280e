"""Sources in other files: shelve, the original module's JSON, and what ``open`` reads."""

from __future__ import annotations

import dbm
import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import persistdict
from persistdict.backends import declared_class
from persistdict.detect import detect_backend, is_dbm_sqlite3
from persistdict.errors import CorruptError, no_such
from persistdict.migrate.base import Source, UntrustedPickleError, refusal
from persistdict.migrate.sqlite_sources import connect_read_only

__all__ = ["NativeSource", "PersistDict0JsonSource", "ShelveSource", "open_dbm_read_only"]


# shelve -------------------------------------------------------------------------------------


class _Sqlite3Dbm:
    """A ``dbm.sqlite3`` file read through SQLite directly, on any Python.

    ``dbm.open(path, "r")`` opens it with ``mode=ro``, which leaves new ``-wal`` and
    ``-shm`` files beside a source that must not change; this reads it like the other
    SQLite sources, and also lets Python 3.10-3.12 import a shelve made by 3.13.
    """

    def __init__(self, path: str) -> None:
        self._cx = connect_read_only(path)

    def keys(self) -> list[bytes]:
        # In the order written (rowid), as the backend and dbm.dumb iterate.
        rows = self._cx.execute("SELECT key FROM Dict ORDER BY rowid")
        return [bytes(row[0]) for row in rows]

    def __getitem__(self, key: bytes) -> bytes:
        row = self._cx.execute("SELECT value FROM Dict WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return bytes(row[0])

    def __len__(self) -> int:
        count: int = self._cx.execute("SELECT count(*) FROM Dict").fetchone()[0]
        return count

    def __enter__(self) -> _Sqlite3Dbm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._cx.close()


def open_dbm_read_only(path: str) -> Any:
    """The dbm database at ``path`` opened for reading, without writing beside it."""
    if is_dbm_sqlite3(path):
        try:
            return _Sqlite3Dbm(path)
        except sqlite3.Error as exc:
            raise CorruptError(f"{path!r} can't be read as a dbm.sqlite3 database ({exc})") from exc
    return dbm.open(path, "r")


class ShelveSource(Source):
    """A ``shelve`` file: the stdlib ``dbm`` that ``dbm.whichdb`` names, pickled values."""

    kind = "shelve"
    needs_pickle = True

    def __init__(self, path: str) -> None:
        which = dbm.whichdb(path)
        if which is None:
            raise no_such("dbm database", path, "check the path")
        if which == "" and not is_dbm_sqlite3(path):
            raise CorruptError(f"{path!r} is not a dbm database that this Python can read")
        super().__init__(f"shelve {path!r}")
        self.pickle_reason = "shelve stores every value as a pickle"
        try:
            self._db: Any = open_dbm_read_only(path)
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
    """A target [`persistdict.open`][persistdict.open] reads, opened with ``flag="r"``. A PermaDict
    state
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
        if declared_class(chosen).runs_code and not trust_pickle:
            # The pickle backend unpickles the whole file as it opens: refuse before that.
            raise UntrustedPickleError(
                refusal(f"{chosen} file {target!r}", f"it is a {chosen} file")
            )
        options: dict[str, Any] = {"backend": chosen}
        if table is not None:
            options["table"] = table
        self._dict = persistdict.open(target, "r", **options)
        super().__init__(self._dict.backend.describe().replace(" read-only", ""))

    def count(self) -> int | None:
        return len(self._dict)

    def items(self) -> Iterator[tuple[Any, Any]]:
        last: Any = None
        try:
            for key, value in self._dict.items():
                last = key
                yield key, value
        except (ValueError, TypeError) as exc:  # a stored value the serializer can't decode
            if isinstance(exc, persistdict.Error) and not isinstance(exc, CorruptError):
                raise
            where = "the first value" if last is None else f"the value after key {last!r}"
            found = str(exc) if isinstance(exc, CorruptError) else f"{where} can't be decoded"
            raise CorruptError(
                f"{self.label}: {found} ({type(exc).__name__}: {exc}). If another library wrote "
                "this file, name its kind with --from (Python: source=)"
            ) from exc

    def close(self) -> None:
        self._dict.close()
