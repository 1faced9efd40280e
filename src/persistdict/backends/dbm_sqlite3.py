"""``dbm.sqlite3`` files (Python 3.13's default dbm) through ``sqlite3``, for the dbm backend.

CPython's module binds its connection to the thread that opened it, which a dict shared by
threads can't use, and it exists only on 3.13+; this reads and writes the same file format
with the same table and statements, on every Python the project supports.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse

from persistdict.errors import CorruptError

__all__ = ["SqliteDbm"]


class SqliteDbm:
    """A ``dbm.sqlite3`` database with the dbm interface the backend uses, on any Python.

    The table and the statements are ``dbm.sqlite3``'s own, so the file stays one that
    ``shelve`` and ``dbm`` of Python 3.13 open. Unlike that module's, the connection may be
    used by any thread (``PersistDict`` serializes the calls). A forked child reads through
    the connection it inherited, as it would through ``dbm.sqlite3``'s, and never writes
    (see ``check_writable``): closing or replacing that connection there checkpoints the
    parent's write-ahead log from the child.
    """

    def __init__(self, path: str, flag: str) -> None:
        self._path = path
        self._read_only = flag == "r"
        self._cx = self._connect()
        if flag == "n":
            self._cx.execute("DELETE FROM Dict")

    def _connect(self) -> sqlite3.Connection:
        mode = "ro" if self._read_only else "rw"
        uri = "file:" + urllib.parse.quote(os.path.abspath(self._path)) + f"?mode={mode}"
        try:
            cx = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            if not self._read_only:
                cx.execute("PRAGMA journal_mode = wal")
                cx.execute(_BUILD_TABLE)
            cx.execute("SELECT count(*) FROM Dict").fetchone()
        except sqlite3.Error as exc:
            raise CorruptError(
                f"can't open the dbm.sqlite3 database {self._path!r}: {exc}"
            ) from exc
        return cx

    def __getitem__(self, key: bytes) -> bytes:
        row = self._cx.execute(_LOOKUP_KEY, (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return bytes(row[0])

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._cx.execute(_STORE_KV, (key, value))

    def __delitem__(self, key: bytes) -> None:
        if self._cx.execute(_DELETE_KEY, (key,)).rowcount == 0:
            raise KeyError(key)

    def __contains__(self, key: bytes) -> bool:
        return self._cx.execute(_LOOKUP_KEY, (key,)).fetchone() is not None

    def keys(self) -> list[bytes]:
        return [bytes(row[0]) for row in self._cx.execute(_ITER_KEYS)]

    def __len__(self) -> int:
        count: int = self._cx.execute(_GET_SIZE).fetchone()[0]
        return count

    def close(self) -> None:
        self._cx.close()


# dbm.sqlite3's statements (CPython 3.13 Lib/dbm/sqlite3.py): the same file format.
_BUILD_TABLE = "CREATE TABLE IF NOT EXISTS Dict (key BLOB UNIQUE NOT NULL, value BLOB NOT NULL)"
_GET_SIZE = "SELECT COUNT (key) FROM Dict"
_LOOKUP_KEY = "SELECT value FROM Dict WHERE key = CAST(? AS BLOB)"
_STORE_KV = "REPLACE INTO Dict (key, value) VALUES (CAST(? AS BLOB), CAST(? AS BLOB))"
_DELETE_KEY = "DELETE FROM Dict WHERE key = CAST(? AS BLOB)"
# dbm.sqlite3 leaves the order to SQLite, which walks the key index (sorted by bytes);
# rowid order is insertion order, as dbm.dumb iterates, and a plain scan of the table.
_ITER_KEYS = "SELECT key FROM Dict ORDER BY rowid"
