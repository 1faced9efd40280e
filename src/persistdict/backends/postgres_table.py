"""The PostgreSQL backend: a table per dict, shared by processes on many machines.

URL: ``postgresql://[user[:password]@]host[:port]/dbname[?options]`` (or ``postgres://``).
``schema`` and ``timeout`` are ours, in the query string or as keyword arguments; every other
query parameter (``sslmode``, ``application_name``, ``connect_timeout``...) goes to libpq.

Layout. With the JSON serializer (the default) the table is::

    key   text COLLATE "C" PRIMARY KEY,
    value jsonb GENERATED ALWAYS AS (...) STORED,   -- the document, for SQL queries
    raw   text NOT NULL                             -- exactly what the serializer wrote

Reads return ``raw``, so a round trip is exact: jsonb alone would reorder object keys, turn
``1e16`` into an integer, drop the sign of ``-0.0`` and refuse ``NaN`` and ``"\\u0000"``. The
server derives ``value`` from ``raw`` (NULL for the NaN/Infinity/``\\u0000`` cases jsonb
refuses), so SQL users can query and index it and we send each value once. With any other
serializer the table is ``key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL``.
Keys are stored as they are, except that PostgreSQL text can't hold NUL: a key containing
NUL (or U+FFFF) is stored with NUL as U+FFFF "0" and U+FFFF doubled (see ``_column_key``).

Durability: each write is committed by the server before the call returns; ``update()`` is one
transaction (COPY for large batches). Concurrency: ``transaction()`` is a database transaction
(SAVEPOINTs when nested) that first takes an exclusive advisory lock for this table, while
every plain write takes it shared; so a read-modify-write block is exact against other
clients' blocks and plain writes, and plain writes don't wait on each other. Waits end after
``timeout`` seconds with :class:`~persistdict.LockedError`.

Iteration pages through the primary key (``key > last ORDER BY key LIMIT n``): memory stays
flat, no transaction stays open between pages, and writes during the loop are allowed.
``len()`` is an exact ``count(*)``: PostgreSQL keeps no exact row count to read instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from persistdict.backends.base import (
    BackendBase,
    MissingTableError,
    check_flag,
    check_table_name,
    fork_generation,
    import_driver,
)
from persistdict.errors import ClosedError, CorruptError, LockedError, ReadOnlyError
from persistdict.serializers import JsonSerializer
from persistdict.urls import mask_password, url_options

__all__ = ["PostgresBackend"]

DEFAULT_TIMEOUT = 10.0
_PAGE = 1000
_COPY_AT = 1000  # batches at least this large go through COPY
_OPTIONS = {"schema": str, "timeout": float}
_ESCAPE = "\uffff"
_UNESCAPE = re.compile("\uffff([\uffff0])")
# Connections inherited across fork are kept referenced, never closed in the child: closing
# one would end the parent's session on the shared socket.
_abandoned: list[Any] = []
# jsonb refuses NaN/Infinity and \u0000; for those rows the document column is NULL. The
# check is textual, so a string merely containing "NaN" also gets NULL: raw stays exact.
_DOCUMENT = (
    "CASE WHEN strpos(raw, 'NaN') > 0 OR strpos(raw, 'Infinity') > 0 "
    "OR strpos(raw, '\\u0000') > 0 THEN NULL ELSE raw::jsonb END"
)


def _psycopg() -> Any:
    return import_driver("psycopg", "postgres", "postgres")


def _lock_id(schema: str, table: str) -> int:
    digest = hashlib.blake2b(f"persistdict:{schema}.{table}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _split_query(url: str) -> tuple[str, str]:
    """``(url with only our options, url with only libpq's)``."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    ours = urlencode([(k, v) for k, v in pairs if k in _OPTIONS])
    theirs = urlencode([(k, v) for k, v in pairs if k not in _OPTIONS])
    return urlunsplit(parts._replace(query=ours)), urlunsplit(parts._replace(query=theirs))


class PostgresBackend(BackendBase):
    """A dict stored in table ``table`` of the PostgreSQL database at ``url``.

    Args:
        url: ``postgresql://user:password@host:port/dbname``; libpq query options pass through.
        table: the table name, ``[A-Za-z_][A-Za-z0-9_]*``; created if missing (not with ``r``).
        flag: ``"r"`` refuses writes; ``"n"`` empties the table; ``"c"``/``"w"`` as is.
        serializer: the dict's serializer; ``open()`` passes it. JSON gets the jsonb layout.
        schema: the schema holding the table (default: the first of the search path).
        timeout: seconds to wait for another client's transaction on this table.
    """

    name: ClassVar[str] = "postgres"
    schemes: ClassVar[tuple[str, ...]] = ("postgresql", "postgres")
    native_transactions: ClassVar[bool] = True
    takes_url: ClassVar[bool] = True

    def __init__(
        self,
        url: str,
        table: str = "items",
        *,
        flag: str = "c",
        serializer: Any = None,
        schema: str | None = None,
        timeout: float | None = None,
    ) -> None:
        self.table = check_table_name(table)
        check_flag(flag)
        self.url = url
        self._shown = mask_password(url)
        ours, self._conninfo = _split_query(url)
        options = url_options(ours, {"schema": schema, "timeout": timeout}, _OPTIONS)
        self.schema = options.get("schema")
        if self.schema is not None:
            check_table_name(self.schema)
        self.timeout = float(options.get("timeout", DEFAULT_TIMEOUT))
        self.read_only = flag == "r"
        self.jsonb = serializer is None or isinstance(serializer, JsonSerializer)
        self._depth = 0
        self._pg = _psycopg()
        sql = self._pg.sql
        self._ident = (
            sql.Identifier(self.schema, self.table) if self.schema else sql.Identifier(self.table)
        )
        self._lock = _lock_id(self.schema or "", self.table)
        self._statements: dict[str, str] = {}
        self._cx: Any = None
        cx = self._connect()
        try:
            with self._errors():
                self._prepare_table(cx, flag)
        except BaseException:
            cx.close()
            raise

    # Connection management.

    def _connect(self) -> Any:
        try:
            cx = self._pg.connect(self._conninfo, autocommit=True)
            # Waits for a lock (another client's transaction) end with an error, not never.
            cx.execute(f"SET lock_timeout = {int(self.timeout * 1000)}")
        except self._pg.Error as exc:
            raise ConnectionError(
                f"can't connect to PostgreSQL at {self._shown}: {str(exc).strip()}. Check that "
                "the server is running and the URL's user, password and database"
            ) from exc
        self._cx = cx
        self._generation = fork_generation()
        return cx

    def _prepare_table(self, cx: Any, flag: str) -> None:
        columns = self._columns(cx)
        if not columns and flag in ("r", "w"):
            raise MissingTableError(self._shown, self.table, self._tables(cx))
        if not columns and not self.read_only:
            self._create(cx)
            columns = self._columns(cx)
        if columns:
            if columns == {"key": "text", "value": "jsonb", "raw": "text"}:
                if not self.jsonb:
                    raise ValueError(
                        f"{self.describe()} holds JSON (a jsonb table) and this serializer "
                        "writes other data; open it with the JSON serializer, or pass another "
                        "table="
                    )
            elif columns == {"key": "text", "value": "bytea"}:
                self.jsonb = False  # JSON text is then stored as UTF-8 bytes; loads takes it
            else:
                found = ", ".join(f"{k} {v}" for k, v in columns.items())
                raise CorruptError(
                    f"{self.describe()}: the table was not created by persistdict (columns: "
                    f"{found}); it was left untouched. Pass table= another name"
                )
        self._col = "raw" if self.jsonb else "value"
        if flag == "n" and not self.read_only:
            cx.execute(self._sql("DELETE FROM {t}"))

    def _columns(self, cx: Any) -> dict[str, str]:
        rows = cx.execute(
            "SELECT a.attname, format_type(a.atttypid, NULL) FROM pg_attribute a "
            "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            (self._ident.as_string(cx),),
        ).fetchall()
        return {name: kind for name, kind in rows}

    def _tables(self, cx: Any) -> list[str]:
        rows = cx.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname = coalesce(%s, current_schema())",
            (self.schema,),
        ).fetchall()
        return [name for (name,) in rows]

    def _create(self, cx: Any) -> None:
        if self.jsonb:
            body = (
                'key text COLLATE "C" PRIMARY KEY, '
                f"value jsonb GENERATED ALWAYS AS ({_DOCUMENT}) STORED, raw text NOT NULL"
            )
        else:
            body = 'key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL'
        # Two clients creating the table at the same moment: one of them sees it exist.
        with contextlib.suppress(self._pg.errors.UniqueViolation, self._pg.errors.DuplicateTable):
            cx.execute(self._sql(f"CREATE TABLE IF NOT EXISTS {{t}} ({body})"))

    def _sql(self, text: str) -> Any:
        """``text`` with ``{t}`` replaced by the quoted table name, as a plain string.

        Kept per backend: composing it anew cost more than the client's share of a get, and
        a plain string lets psycopg prepare a statement that is run again and again."""
        try:
            return self._statements[text]
        except KeyError:
            pass
        statement = self._pg.sql.SQL(text).format(t=self._ident).as_string(self._cx)
        self._statements[text] = statement
        return statement

    @property
    def _conn(self) -> Any:
        cx = self._cx
        if cx is None:
            raise ClosedError(f"{self.describe()} is closed; open it again with persistdict.open()")
        if self._generation != fork_generation():
            _abandoned.append(cx)
            self._depth = 0
            return self._connect()
        if cx.closed and not self._depth:
            return self._connect()  # the server dropped us between statements: safe to redo
        return cx

    @contextmanager
    def _errors(self) -> Iterator[None]:
        pg = self._pg
        try:
            yield
        except pg.errors.LockNotAvailable as exc:
            raise LockedError(
                f"{self.describe()}: another client's transaction held the table for "
                f"{self.timeout:g}s; retry, or pass a longer timeout="
            ) from exc
        except pg.errors.ReadOnlySqlTransaction as exc:
            raise ReadOnlyError(f"{self.describe()} can't be written: {exc}") from exc
        except pg.OperationalError as exc:
            if self._cx is not None and self._cx.closed:
                raise ConnectionError(
                    f"lost the connection to PostgreSQL at {self._shown}: {str(exc).strip()}. "
                    "Check that the server is running; the next call reconnects"
                    + (" (the open transaction was rolled back)" if self._depth else "")
                ) from exc
            raise

    def _run(self, statement: Any, params: Any = (), *, retry: bool = True) -> Any:
        """Execute one statement; after a dropped connection, reconnect and run it again if
        ``retry`` (the statement is idempotent) and no transaction was open."""
        with self._errors():
            cx = self._conn
            try:
                return cx.execute(statement, params)
            except self._pg.OperationalError:
                if not (retry and cx.closed and not self._depth):
                    raise
            return self._connect().execute(statement, params)

    def _read(self, statement: Any, params: Any = ()) -> list[Any]:
        try:
            return list(self._run(statement, params).fetchall())
        except self._pg.errors.UndefinedTable:
            return []  # opened read-only before any writer created the table

    # The Backend methods.

    def get(self, key: str) -> Any:
        column = _stored_key(key)
        if column is None:
            raise KeyError(key)
        rows = self._read(self._sql(f"SELECT {self._col} FROM {{t}} WHERE key = %s"), (column,))
        if not rows:
            raise KeyError(key)
        return rows[0][0]

    def contains(self, key: str) -> bool:
        column = _stored_key(key)
        if column is None:
            return False
        return bool(self._read(self._sql("SELECT 1 FROM {t} WHERE key = %s"), (column,)))

    def _value(self, key: str, value: Any) -> Any:
        if self.jsonb:
            if not isinstance(value, str):
                raise TypeError(
                    f"{self.describe()} stores JSON text, but the value for key {key!r} was "
                    f"encoded as {type(value).__name__}; open it with the JSON serializer"
                )
            if "\x00" in value:
                raise ValueError(f"can't store the value for key {key!r}: it contains NUL")
            _check_utf8(key, value)
            return value
        if isinstance(value, str):
            _check_utf8(key, value)
            return value.encode("utf-8")
        return bytes(value)

    def set(self, key: str, value: Any) -> None:
        self.check_writable()
        column = _column_key(key)
        statement = self._sql(
            "WITH l AS (SELECT pg_advisory_xact_lock_shared(%s)) "
            f"INSERT INTO {{t}} (key, {self._col}) SELECT %s, %s FROM l "
            f"ON CONFLICT (key) DO UPDATE SET {self._col} = excluded.{self._col}"
        )
        self._run(statement, (self._lock, column, self._value(key, value)))

    def delete(self, key: str) -> None:
        self.check_writable()
        column = _stored_key(key)
        if column is None:
            raise KeyError(key)
        statement = self._sql(
            "WITH l AS (SELECT pg_advisory_xact_lock_shared(%s)) "
            "DELETE FROM {t} USING l WHERE key = %s"
        )
        # Not retried after a dropped connection: a delete that did run would then say 0 rows.
        if self._run(statement, (self._lock, column), retry=False).rowcount == 0:
            raise KeyError(key)

    def set_many(self, items: Iterable[tuple[str, Any]]) -> None:
        self.check_writable()
        rows: dict[str, Any] = {}
        for key, value in items:  # the last value of a repeated key wins, as in dict.update
            rows[_column_key(key)] = self._value(key, value)
        if not rows:
            return
        with self._errors():
            if self._depth:
                self._upsert(self._conn, rows)
                return
            cx = self._conn
            with cx.transaction():
                cx.execute("SELECT pg_advisory_xact_lock_shared(%s)", (self._lock,))
                self._upsert(cx, rows)

    def _upsert(self, cx: Any, rows: dict[str, Any]) -> None:
        col = self._col
        if len(rows) < _COPY_AT:
            cx.cursor().executemany(
                self._sql(
                    f"INSERT INTO {{t}} (key, {col}) VALUES (%s, %s) "
                    f"ON CONFLICT (key) DO UPDATE SET {col} = excluded.{col}"
                ),
                list(rows.items()),
            )
            return
        # COPY into a session-private staging table, then one upsert: far fewer round trips.
        stage = f"pd_stage_{col}"
        kind = "text" if self.jsonb else "bytea"
        cx.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} (key text, {col} {kind}) "
            "ON COMMIT DELETE ROWS"
        )
        with cx.cursor().copy(f"COPY {stage} (key, {col}) FROM STDIN") as copy:
            for row in rows.items():
                copy.write_row(row)
        cx.execute(
            self._sql(
                f"INSERT INTO {{t}} (key, {col}) SELECT key, {col} FROM {stage} "
                f"ON CONFLICT (key) DO UPDATE SET {col} = excluded.{col}"
            )
        )
        cx.execute(f"DELETE FROM {stage}")  # inside a longer transaction it would keep rows

    def clear(self) -> None:
        self.check_writable()
        statement = "WITH l AS (SELECT pg_advisory_xact_lock_shared(%s)) DELETE FROM {t} USING l"
        self._run(self._sql(statement), (self._lock,))

    def count(self) -> int:
        rows = self._read(self._sql("SELECT count(*) FROM {t}"))
        return int(rows[0][0]) if rows else 0

    def _pages(self, columns: str) -> Iterator[list[Any]]:
        first = self._sql(f"SELECT {columns} FROM {{t}} ORDER BY key LIMIT {_PAGE}")
        following = self._sql(
            f"SELECT {columns} FROM {{t}} WHERE key > %s ORDER BY key LIMIT {_PAGE}"
        )
        rows = self._read(first)
        while rows:
            yield rows
            if len(rows) < _PAGE:
                return
            rows = self._read(following, (rows[-1][0],))

    def iter_keys(self) -> Iterator[str]:
        for rows in self._pages("key"):
            for (key,) in rows:
                yield _dict_key(key)

    def iter_items(self) -> Iterator[tuple[str, Any]]:
        for rows in self._pages(f"key, {self._col}"):
            for key, value in rows:
                yield _dict_key(key), value

    # Transactions.

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.check_writable()
        with self._errors():
            cx = self._conn
            if self._depth == 0:
                cx.execute("BEGIN")
                try:
                    cx.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock,))
                except BaseException:
                    if not cx.closed:
                        cx.execute("ROLLBACK")
                    raise
            else:
                cx.execute(f"SAVEPOINT pd_{self._depth}")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            with self._errors():
                if cx.closed:
                    pass  # the server already rolled the transaction back
                elif self._depth == 0:
                    cx.execute("ROLLBACK")
                else:
                    cx.execute(f"ROLLBACK TO SAVEPOINT pd_{self._depth}")
                    cx.execute(f"RELEASE SAVEPOINT pd_{self._depth}")
            raise
        self._depth -= 1
        with self._errors():
            cx.execute("COMMIT" if self._depth == 0 else f"RELEASE SAVEPOINT pd_{self._depth}")

    # Lifecycle.

    def flush(self) -> None:
        pass  # every write is committed before it returns

    def close(self) -> None:
        cx = self._cx
        if cx is None:
            return
        self._cx = None
        if self._generation != fork_generation():
            _abandoned.append(cx)
            return
        cx.close()

    def describe(self) -> str:
        ro = " read-only" if self.read_only else ""
        where = f"{self.schema}.{self.table}" if self.schema else self.table
        return f"postgres {self._shown} table {where!r}{ro}"


def _column_key(key: str) -> str:
    """The text stored for ``key``. PostgreSQL text can't hold NUL, so NUL is written as
    U+FFFF "0" and U+FFFF itself as U+FFFF U+FFFF (a noncharacter, reserved for such internal
    use); every other key is stored as it is. ``ValueError`` if UTF-8 can't encode ``key``."""
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"can't store key {key!r} as UTF-8: {exc}") from None
    if "\x00" in key or _ESCAPE in key:
        return key.replace(_ESCAPE, _ESCAPE * 2).replace("\x00", _ESCAPE + "0")
    return key


def _stored_key(key: str) -> str | None:
    """:func:`_column_key`, or ``None`` for a key that can't have been stored."""
    try:
        return _column_key(key)
    except ValueError:
        return None


def _dict_key(column: str) -> str:
    if _ESCAPE not in column:
        return column
    return _UNESCAPE.sub(lambda m: "\x00" if m.group(1) == "0" else _ESCAPE, column)


def _check_utf8(key: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"can't store the value for key {key!r} as UTF-8: {exc}") from None
