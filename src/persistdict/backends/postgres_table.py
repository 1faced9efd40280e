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
``timeout`` seconds with [`LockedError`][persistdict.LockedError]; ``timeout=0`` doesn't wait (the
server's ``lock_timeout`` is set to 1 ms, as 0 there means "no limit"), and a timeout longer
than ``lock_timeout`` can hold (2**31 - 1 ms, about 24.8 days) waits that long.

A DELETE that waited for the lock must see the rows the block committed meanwhile. Under READ
COMMITTED a statement reads the snapshot taken when it started, so the lock is taken in a
statement of its own and the DELETE runs after it, in the same short transaction.

Iteration pages through the primary key (``key > last ORDER BY key LIMIT n``): memory stays
flat, no transaction stays open between pages, and writes during the loop are allowed.
``len()`` reads a row count that triggers on the table keep exact, in the side table
``<table>__count`` (with the trigger function ``<table>__count_fn``; drop both with the
table). The triggers count every insert, delete and TRUNCATE, by persistdict or by plain SQL,
in the writer's transaction, so the count is as exact as ``count(*)`` without scanning the
table. Each writing statement appends its change as a row (so writers never wait on one
another for the count), and every 256th append folds the rows into one. The first writable
open of a table installs them; where that isn't allowed (not the table's owner, or the name
leaves no room for the suffix within 63 bytes) ``len()`` is a ``count(*)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ClassVar, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from persistdict.backends.base import (
    BackendBase,
    MissingTableError,
    check_flag,
    check_table_name,
    fork_generation,
    import_driver,
    value_bytes,
)
from persistdict.errors import CorruptError, Error, LockedError, ReadOnlyError, closed_error
from persistdict.locking import DEFAULT_TIMEOUT, check_timeout
from persistdict.serializers import JsonSerializer
from persistdict.urls import (
    check_url,
    driver_errors,
    mask_password,
    redacted_errors,
    redacted_logs,
    url_options,
)

__all__ = ["PostgresBackend"]

_PAGE = 1000
_COPY_AT = 1000  # batches at least this large go through COPY
_OPTIONS: dict[str, Callable[[str], Any]] = {
    "schema": str,
    "timeout": lambda text: check_timeout(float(text)),
}
_MAX_LOCK_TIMEOUT_MS = 2**31 - 1  # lock_timeout is a 32-bit int of milliseconds
_UNSENT: Any = object()  # no COMMIT was sent yet
# The kept row count: side table, trigger function, and the triggers with their events.
_COUNT = "__count"
_COUNT_FN = "__count_fn"
_MAX_NAME = 63  # PostgreSQL's identifier length, in bytes
_TRIGGERS = {
    "persistdict_count_insert": ("INSERT", "REFERENCING NEW TABLE AS pd_new"),
    "persistdict_count_delete": ("DELETE", "REFERENCING OLD TABLE AS pd_old"),
    "persistdict_count_truncate": ("TRUNCATE", ""),
}
# SECURITY DEFINER: a role that may write the table but not the side table is counted too.
_COUNT_FUNCTION = """
CREATE OR REPLACE FUNCTION {f}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $count$
DECLARE
  delta bigint;
  appended bigint;
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    TRUNCATE {side};
    RETURN NULL;
  END IF;
  IF TG_OP = 'INSERT' THEN
    SELECT count(*) INTO delta FROM pd_new;
  ELSE
    SELECT -count(*) INTO delta FROM pd_old;
  END IF;
  IF delta <> 0 THEN
    INSERT INTO {side} (n) VALUES (delta) RETURNING id INTO appended;
    IF appended % 256 = 0 THEN
      -- Fold the rows no other transaction holds into one; those it holds stay as they are.
      WITH gone AS (
        DELETE FROM {side} WHERE id IN (SELECT id FROM {side} FOR UPDATE SKIP LOCKED)
        RETURNING n
      )
      INSERT INTO {side} (n) SELECT sum(n) FROM gone HAVING count(*) > 0;
    END IF;
  END IF;
  RETURN NULL;
END
$count$
"""
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
    table: str
    schemes: ClassVar[tuple[str, ...]] = ("postgresql", "postgres")
    native_transactions: ClassVar[bool] = True
    takes_url: ClassVar[bool] = True
    durability: ClassVar[str] = (
        "each write is committed before the call returns; PostgreSQL's WAL and "
        "synchronous_commit decide what survives a crash"
    )

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
        self.table = _check_length(check_table_name(table), "table")
        check_flag(flag)
        self.url = url
        self._shown = mask_password(url)
        check_url(url)
        ours, self._conninfo = _split_query(url)
        options = url_options(ours, {"schema": schema, "timeout": timeout}, _OPTIONS)
        self.schema = options.get("schema")
        if self.schema is not None:
            _check_length(check_table_name(self.schema), "schema")
        self.timeout = check_timeout(options.get("timeout", DEFAULT_TIMEOUT))
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
        # libpq echoes tokens of a URL it can't use, in its errors and psycopg's log records.
        with redacted_errors(self.url), redacted_logs(self.url, "psycopg"):
            return self._connect_once()

    def _connect_once(self) -> Any:
        try:
            cx = self._pg.connect(self._conninfo, autocommit=True)
            # Waits for a lock (another client's transaction) end with an error, not never.
            cx.execute(f"SET lock_timeout = {_lock_timeout_ms(self.timeout)}")
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
                what = (
                    f"{self.describe()}: the table was not created by persistdict (columns: "
                    f"{found}); it was left untouched. Pass"
                )
                raise CorruptError(
                    f"{what} table= another name", cli_message=f"{what} --table another name"
                )
        col = self._col = "raw" if self.jsonb else "value"
        # The statements of get, `in` and set, looked up once rather than on each call.
        self._get_sql = self._sql(f"SELECT {col} FROM {{t}} WHERE key = %s")
        self._has_sql = self._sql("SELECT 1 FROM {t} WHERE key = %s")
        # One statement, the lock in a CTE: its snapshot may predate a block that held the
        # table, but ON CONFLICT finds and updates a row that block inserted all the same.
        # Inside transaction() the session holds the lock already: the upsert alone.
        upsert = f"ON CONFLICT (key) DO UPDATE SET {col} = excluded.{col}"
        self._set_sql = self._sql(
            "WITH l AS (SELECT pg_advisory_xact_lock_shared(%s)) "
            f"INSERT INTO {{t}} (key, {col}) SELECT %s, %s FROM l {upsert}"
        )
        self._set_in_block_sql = self._sql(
            f"INSERT INTO {{t}} (key, {col}) VALUES (%s, %s) {upsert}"
        )
        self._delete_sql = self._sql("DELETE FROM {t} WHERE key = %s")
        self._counter = self._find_counter(cx) if columns else None
        if flag == "n" and not self.read_only:
            self.clear()  # waits for a transaction in progress, and empties what it wrote

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
        names = {name for (name,) in rows}
        # Leave out the row-count side tables len() keeps beside each dict's table.
        return sorted(n for n in names if not (n.endswith("__count") and n[:-7] in names))

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
            raise closed_error(self.describe())
        if self._generation != fork_generation():
            _abandoned.append(cx)
            self._depth = 0
            return self._connect()
        if cx.closed and not self._depth:
            return self._connect()  # the server dropped us between statements: safe to redo
        return cx

    def _errors(self) -> AbstractContextManager[None]:
        return driver_errors(self.url, self._translated())

    def _reraise(self, exc: BaseException) -> NoReturn:
        """Raise ``exc`` as it would leave ``_errors()``, for ``_run``, which catches errors
        with a bare ``try`` instead: entering ``_errors()`` (three generator context
        managers) on every statement cost a quarter of the client's work for a get."""
        with self._errors():
            raise exc
        raise AssertionError("unreachable")  # pragma: no cover - _errors() swallows nothing

    @contextmanager
    def _translated(self) -> Iterator[None]:
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
        except pg.errors.InFailedSqlTransaction as exc:
            raise self._aborted_block() from exc
        except pg.OperationalError as exc:
            if self._cx is not None and self._cx.closed:
                raise ConnectionError(
                    f"lost the connection to PostgreSQL at {self._shown}: {str(exc).strip()}. "
                    "Check that the server is running; the next call reconnects"
                    + (
                        ". The open transaction() was rolled back: nothing was written; run "
                        "the block again"
                        if self._depth
                        else ""
                    )
                ) from exc
            raise

    def _run(self, statement: Any, params: Any = (), *, retry: bool = True) -> Any:
        """Execute one statement; after a dropped connection, reconnect and run it again if
        ``retry`` (the statement is idempotent) and no transaction was open."""
        try:
            cx = self._conn
            try:
                return cx.execute(statement, params)
            except self._pg.OperationalError:
                if not (retry and cx.closed and not self._depth):
                    raise
            return self._connect().execute(statement, params)
        except BaseException as exc:
            self._reraise(exc)

    def _locked_write(self, work: Callable[[Any], Any]) -> Any:
        """Run ``work(connection)``, the statements of one write, in a short transaction
        that first takes the table's shared lock in a statement of its own: under READ
        COMMITTED the statements' snapshots are then taken after any transaction() that held
        the table committed, so they see that block's rows.

        Exactly once across a dropped connection: if it drops before COMMIT the server rolls
        back and the write runs again on a new connection; if it drops while COMMIT is sent,
        the transaction's id says whether it committed (``txid_status``)."""
        if self._depth:  # inside transaction(): this session already holds the lock
            with self._errors():
                return work(self._conn)
        with self._errors():
            cx = self._conn
            for again in (True, False):
                xid: int | None = None
                result: Any = None
                try:
                    first = cx.execute(
                        f"BEGIN; SELECT pg_advisory_xact_lock_shared({self._lock}), txid_current()"
                    )  # no parameters: one simple query, one round trip
                    first.nextset()
                    xid = int(first.fetchone()[1])
                    result = work(cx)
                    cx.execute("COMMIT")
                    return result
                except self._pg.OperationalError as exc:
                    if not cx.closed:
                        self._rollback(cx)
                        raise
                    if xid is not None and self._committed(xid, exc):
                        return result
                    if not again:
                        raise
                    cx = self._connect()  # nothing was written: run it again
                except BaseException:
                    self._rollback(cx)
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _rollback(self, cx: Any) -> None:
        if not cx.closed and cx.info.transaction_status != self._pg.pq.TransactionStatus.IDLE:
            cx.execute("ROLLBACK")

    def _committed(self, xid: int, lost: BaseException) -> bool:
        """Whether transaction ``xid``, whose connection dropped while its COMMIT was sent,
        committed; asked over a new connection. The server may still be ending the old
        session, so an "in progress" answer is asked again, for up to ``timeout`` seconds."""
        try:
            cx = self._connect()
            deadline = time.monotonic() + max(self.timeout, 1.0)
            while True:
                row = cx.execute("SELECT txid_status(%s)", (xid,)).fetchone()
                status = row[0] if row else None
                if status != "in progress" or time.monotonic() >= deadline:
                    break
                time.sleep(0.01)
        except (ConnectionError, self._pg.Error) as again:
            raise ConnectionError(
                f"lost the connection to PostgreSQL at {self._shown} while committing "
                f"({str(lost).strip()}), and can't ask the server whether it committed "
                f"({str(again).strip()}): it was committed whole or not at all. Check that "
                "the server is running, then read the data to see which"
            ) from lost
        if status in ("committed", "aborted"):
            return bool(status == "committed")
        raise ConnectionError(
            f"lost the connection to PostgreSQL at {self._shown} while committing "
            f"({str(lost).strip()}); the server can't say whether it committed (status "
            f"{status!r}): it was committed whole or not at all. Check that the server is "
            "running, then read the data to see which"
        ) from lost

    def _read(self, statement: Any, params: Any = ()) -> list[Any]:
        try:
            rows: list[Any] = self._run(statement, params).fetchall()
            return rows
        except self._pg.errors.UndefinedTable:
            return []  # opened read-only before any writer created the table

    # The Backend methods.

    def get(self, key: str) -> Any:
        column = _stored_key(key)
        if column is None:
            raise KeyError(key)
        rows = self._read(self._get_sql, (column,))
        if not rows:
            raise KeyError(key)
        return rows[0][0]

    def contains(self, key: str) -> bool:
        column = _stored_key(key)
        if column is None:
            return False
        return bool(self._read(self._has_sql, (column,)))

    def _value(self, key: str, value: Any) -> Any:
        if self.jsonb:
            if not isinstance(value, str):
                raise TypeError(
                    f"{self.describe()} stores JSON text, but the value for key {key!r} was "
                    f"encoded as {type(value).__name__}; open it with the JSON serializer"
                )
            if "\x00" in value:
                raise ValueError(f"can't store the value for key {key!r}: it contains NUL")
            value_bytes(key, value)  # refuses text UTF-8 can't hold
            return value
        return value_bytes(key, value)

    def set(self, key: str, value: Any) -> None:
        self.check_writable()
        column = _column_key(key)
        if self._depth and self._generation == fork_generation():  # not a forked child's
            self._run(self._set_in_block_sql, (column, self._value(key, value)))
            return
        self._run(self._set_sql, (self._lock, column, self._value(key, value)))

    def delete(self, key: str) -> None:
        self.check_writable()
        column = _stored_key(key)
        if column is None:
            raise KeyError(key)
        if self._depth and self._generation == fork_generation():  # not a forked child's
            # The session holds the lock: the statement alone, as set() does, without
            # _locked_write's closure and context managers (a tenth of the client's work).
            deleted = self._run(self._delete_sql, (column,)).rowcount
        else:
            statement = self._delete_sql
            deleted = self._locked_write(lambda cx: cx.execute(statement, (column,)).rowcount)
        if not deleted:
            raise KeyError(key)

    def set_many(self, items: Iterable[tuple[str, Any]]) -> None:
        self.check_writable()
        rows = self._rows(items)
        if not rows:
            return
        self._locked_write(lambda cx: self._upsert(cx, rows))

    def _rows(self, items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
        """The rows to store for ``items``: the last value of a repeated key wins, as in
        ``dict.update``. Raises as ``set()`` does, before anything is written."""
        given = dict(items)
        if self.jsonb:
            # The usual batch, checked whole in C: str values, no NUL, nothing that needs
            # escaping, all UTF-8. Checking key by key cost a twentieth of update().
            try:
                keys = "".join(given)
                values = "".join(given.values())
                if not ("\x00" in keys or _ESCAPE in keys or "\x00" in values):
                    keys.encode("utf-8")
                    values.encode("utf-8")
                    return given
            except (TypeError, UnicodeEncodeError):
                pass  # named by the loop below
        return {_column_key(key): self._value(key, value) for key, value in given.items()}

    def _upsert(self, cx: Any, rows: dict[str, Any]) -> None:
        col = self._col
        kind = "text" if self.jsonb else "bytea"
        if len(rows) < _COPY_AT:
            # One statement for the batch (two arrays), not one per row: the row count's
            # triggers then run once. The keys are distinct, as ON CONFLICT needs.
            cx.execute(
                self._sql(
                    f"INSERT INTO {{t}} (key, {col}) SELECT * FROM unnest(%s::text[], "
                    f"%s::{kind}[]) ON CONFLICT (key) DO UPDATE SET {col} = excluded.{col}"
                ),
                (list(rows), list(rows.values())),
            )
            return
        # COPY into a session-private staging table, then one upsert: far fewer round trips.
        stage = f"pd_stage_{col}"
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
        if self._depth:  # the block goes on, and another update() would find these rows
            cx.execute(f"DELETE FROM {stage}")  # else COMMIT empties it (ON COMMIT DELETE ROWS)

    def clear(self) -> None:
        self.check_writable()
        statement = self._sql("DELETE FROM {t}")
        self._locked_write(lambda cx: cx.execute(statement))

    def count(self) -> int:
        if self._counter is not None:
            try:
                return int(self._run(self._counter).fetchone()[0])
            except (self._pg.errors.UndefinedTable, self._pg.errors.InsufficientPrivilege):
                self._counter = None  # the side table was dropped, or is not ours to read
        rows = self._read(self._sql("SELECT count(*) FROM {t}"))
        return int(rows[0][0]) if rows else 0

    # The row count kept by triggers (see the module docstring).

    def _find_counter(self, cx: Any) -> Any:
        """The statement reading the kept row count, or ``None`` to count rows. A writable
        open installs the triggers where they are missing."""
        where = cx.execute(
            "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = to_regclass(%s)",
            (self._ident.as_string(cx),),
        ).fetchone()
        if where is None or len(self.table.encode()) + len(_COUNT_FN) > _MAX_NAME:
            return None
        sql = self._pg.sql
        side = sql.Identifier(where[0], self.table + _COUNT)
        if not self._counter_works(cx, side) and (
            self.read_only or not self._install_counter(cx, where[0], side)
        ):
            return None
        # A plain string, composed once: psycopg then prepares it like the other statements.
        return sql.SQL("SELECT coalesce(sum(n), 0) FROM {}").format(side).as_string(cx)

    def _counter_works(self, cx: Any, side: Any) -> bool:
        row = cx.execute(
            "SELECT has_table_privilege(to_regclass(%s), 'SELECT') AND (SELECT count(*) FROM "
            "pg_trigger WHERE tgrelid = to_regclass(%s) AND tgname = ANY(%s) "
            "AND tgenabled <> 'D') = 3",
            (side.as_string(cx), self._ident.as_string(cx), list(_TRIGGERS)),
        ).fetchone()
        return bool(row and row[0])

    def _install_counter(self, cx: Any, schema: str, side: Any) -> bool:
        sql = self._pg.sql
        names = {"t": self._ident, "side": side}
        function = sql.Identifier(schema, self.table + _COUNT_FN)
        try:
            with cx.transaction():
                # Under the table's exclusive lock: no persistdict writer runs meanwhile, and
                # CREATE TRIGGER then holds off plain SQL writers until the count is taken.
                cx.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock,))
                if self._counter_works(cx, side):
                    return True  # another client installed it meanwhile
                cx.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {side} "
                        "(id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n bigint NOT NULL)"
                    ).format(**names)
                )
                cx.execute(sql.SQL(_COUNT_FUNCTION).format(f=function, **names))
                for trigger, (event, rows) in _TRIGGERS.items():
                    cx.execute(
                        sql.SQL("DROP TRIGGER IF EXISTS {} ON {t}").format(
                            sql.Identifier(trigger), **names
                        )
                    )
                    create = (
                        f"CREATE TRIGGER {{}} AFTER {event} ON {{t}} {rows} FOR EACH STATEMENT "
                    )
                    cx.execute(
                        sql.SQL(create).format(sql.Identifier(trigger), **names)
                        + sql.SQL("EXECUTE FUNCTION {}()").format(function)
                    )
                cx.execute(sql.SQL("TRUNCATE {side}").format(**names))
                cx.execute(
                    sql.SQL("INSERT INTO {side} (n) SELECT count(*) FROM {t}").format(**names)
                )
        except (self._pg.errors.InsufficientPrivilege, self._pg.errors.LockNotAvailable):
            return False  # len() counts rows; a later open may install it
        return True

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

    # Each page is handed out by chain(), in C; its keys are translated back (_dict_key) only
    # when one of them holds the escape character. A generator step and a call per key cost
    # more than psycopg's own share of iterating.

    def _key_pages(self) -> Iterator[list[str]]:
        for rows in self._pages("key"):
            keys = [key for (key,) in rows]
            yield [_dict_key(key) for key in keys] if _ESCAPE in "".join(keys) else keys

    def _item_pages(self) -> Iterator[list[tuple[str, Any]]]:
        for rows in self._pages(f"key, {self._col}"):
            if _ESCAPE in "".join([key for key, _ in rows]):
                yield [(_dict_key(key), value) for key, value in rows]
            else:
                yield rows

    def iter_keys(self) -> Iterator[str]:
        return itertools.chain.from_iterable(self._key_pages())

    def iter_items(self) -> Iterator[tuple[str, Any]]:
        return itertools.chain.from_iterable(self._item_pages())

    # Transactions.

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.check_writable()
        with self._errors():
            cx = self._conn
            if self._depth == 0:
                cx = self._begin(cx)
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
            if cx.info.transaction_status == self._pg.pq.TransactionStatus.INERROR:
                # A statement of the block failed and the caller went on: PostgreSQL has
                # aborted it, and a COMMIT would end it as a silent ROLLBACK.
                if self._depth:
                    cx.execute(f"ROLLBACK TO SAVEPOINT pd_{self._depth}")
                    cx.execute(f"RELEASE SAVEPOINT pd_{self._depth}")
                else:
                    cx.execute("ROLLBACK")
                raise self._aborted_block()
            if self._depth:
                cx.execute(f"RELEASE SAVEPOINT pd_{self._depth}")
            else:
                self._commit(cx)

    def _aborted_block(self) -> Error:
        return Error(
            f"{self.describe()}: a statement of this transaction() failed earlier, so "
            "PostgreSQL rolled the block back and nothing of it is written; every write in it "
            "raises until it ends. Leave the block and run it again"
        )

    def _begin(self, cx: Any) -> Any:
        """BEGIN and take the table's lock; after a dropped connection (nothing was done
        yet), once more on a new one. Returns the connection used."""
        for again in (True, False):
            try:
                # No parameters: one simple query, one round trip for both.
                cx.execute(f"BEGIN; SELECT pg_advisory_xact_lock({self._lock})")
                return cx
            except self._pg.OperationalError:
                if not cx.closed:
                    self._rollback(cx)
                    raise
                if not again:
                    raise
                cx = self._connect()
            except BaseException:
                self._rollback(cx)
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _commit(self, cx: Any) -> None:
        # The transaction's id, if it wrote anything, tells after a connection dropped during
        # COMMIT whether the block was written.
        xid: Any = _UNSENT
        try:
            row = cx.execute("SELECT txid_current_if_assigned()").fetchone()
            xid = None if row is None or row[0] is None else int(row[0])
            cx.execute("COMMIT")
        except self._pg.OperationalError as exc:
            if not cx.closed:
                raise
            if xid is not _UNSENT and (xid is None or self._committed(xid, exc)):
                return  # written whole (or there was nothing to write)
            raise ConnectionError(
                f"lost the connection to PostgreSQL at {self._shown} while committing "
                f"a transaction() ({str(exc).strip()}); nothing was written. Check that the "
                "server is running and run the block again; the next call reconnects"
            ) from exc

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


def _lock_timeout_ms(timeout: float) -> int:
    """PostgreSQL's ``lock_timeout`` for a wait of ``timeout`` seconds. 0 there means no limit,
    so "don't wait" becomes the shortest wait it has, 1 ms; it holds at most 2**31 - 1 ms."""
    return min(max(1, round(timeout * 1000)), _MAX_LOCK_TIMEOUT_MS)


def _check_length(name: str, what: str) -> str:
    """``name`` if PostgreSQL keeps it whole: it cuts longer identifiers to 63 bytes without a
    word, so two names that differ only after that would be one table."""
    if len(name.encode()) > _MAX_NAME:
        raise ValueError(
            f"{what} name {name!r} is {len(name.encode())} bytes; PostgreSQL keeps only the "
            f"first {_MAX_NAME} bytes of a name, so it would be another {what}'s. Use a name "
            f"of at most {_MAX_NAME} bytes"
        )
    return name


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
    """``_column_key``, or ``None`` for a key that can't have been stored."""
    try:
        return _column_key(key)
    except ValueError:
        return None


def _dict_key(column: str) -> str:
    if _ESCAPE not in column:
        return column
    return _UNESCAPE.sub(lambda m: "\x00" if m.group(1) == "0" else _ESCAPE, column)
