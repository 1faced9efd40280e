"""Which kind of store a source is, and opening it read-only as a ``Source``."""

from __future__ import annotations

import dbm
import os

from persistdict.backends import available
from persistdict.backends.json_file import JsonFileBackend
from persistdict.detect import SQLITE_HEADER, detect_backend, is_dbm_sqlite3
from persistdict.migrate.base import (
    Source,
    UntrustedPickleError,
    pickle_format,
    refusal,
)
from persistdict.migrate.file_sources import (
    NativeSource,
    PersistDict0JsonSource,
    ShelveSource,
    open_dbm_read_only,
)
from persistdict.migrate.sqlite_sources import (
    DiskcacheSource,
    SqliteTableSource,
    connect_read_only,
    diskcache_database,
    key_value_tables,
    sqlite_errors,
    sqlitedict_schema,
)
from persistdict.urls import mask_password, split_scheme, url_path

__all__ = ["KINDS", "detect_source", "is_sqlite", "open_source"]

KINDS = ("sqlitedict", "shelve", "diskcache", "permadict", "persistdict-0")
"""The foreign source kinds ``source=`` names; every backend name is a source kind too."""


def is_sqlite(path: str) -> bool:
    """Whether ``path`` is a file starting with the SQLite header."""
    try:
        with open(path, "rb") as f:
            return f.read(16) == SQLITE_HEADER
    except OSError:
        return False


def detect_source(src: str, table: str | None = None) -> str:
    """Name the kind of ``src`` where that is certain, else ``"persistdict"`` (a target
    [`persistdict.open`][persistdict.open] reads by its own detection)."""
    if split_scheme(src)[0] is not None:
        return "persistdict"
    if diskcache_database(src) is not None:
        return "diskcache"
    if os.path.isfile(src) and is_sqlite(src) and not is_dbm_sqlite3(src):
        cx = connect_read_only(src)
        try:
            with sqlite_errors(repr(src)):
                tables = key_value_tables(cx)
        finally:
            cx.close()
        chosen = table if table is not None else ("unnamed" if "unnamed" in tables else None)
        if chosen is None and "items" not in tables and len(tables) == 1:
            chosen = next(iter(tables))
        if chosen is not None and tables.get(chosen) == sqlitedict_schema(chosen):
            return "sqlitedict"
        return "persistdict"
    if dbm.whichdb(src) or is_dbm_sqlite3(src):
        try:
            with open_dbm_read_only(src) as db:
                first = next(iter(db.keys()), None)
                if first is not None and pickle_format(db[first]):
                    return "shelve"
        except Exception:  # a damaged dbm file: opening it as a backend says what is wrong
            return "persistdict"
    return "persistdict"


def _permadict_format(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(64)
    if JsonFileBackend.sniff(head):
        return "json"
    if pickle_format(head):
        return "pickle"
    return "csv"


def _native_sqlite(src: str, kind: str, fmt: str | None) -> bool:
    if kind == "sqlite":
        return True
    if kind != "persistdict" or fmt is not None:
        return False
    try:
        return detect_backend(src) == "sqlite"
    except ValueError:
        return False  # NativeSource reports it


def open_source(
    src: str,
    source: str = "auto",
    *,
    table: str | None = None,
    fmt: str | None = None,
    trust_pickle: bool = False,
) -> Source:
    """Open ``src`` read-only as a ``persistdict.migrate.base.Source`` of kind
    ``source`` (see [`persistdict.migrate`][persistdict.migrate]). Refuses pickled data unless
    ``trust_pickle``."""
    kind = detect_source(src, table) if source == "auto" else source
    if kind in KINDS and split_scheme(src)[0] is not None:
        if split_scheme(src)[0] != "sqlite" or kind not in ("sqlitedict", "persistdict-0"):
            raise ValueError(
                f"--from {kind} reads a file; give its path, not the URL {mask_password(src)!r}"
            )
        src = url_path(src)
    opened: Source
    if kind == "sqlitedict":
        opened = SqliteTableSource(src, kind, table, default_table="unnamed")
    elif kind == "diskcache":
        opened = DiskcacheSource(src)
    elif kind == "shelve":
        opened = ShelveSource(src)
    elif kind == "permadict":
        opened = NativeSource(
            src,
            kind=kind,
            backend=fmt or _permadict_format(src),
            trust_pickle=trust_pickle,
        )
    elif kind == "persistdict-0":
        if is_sqlite(src):
            opened = SqliteTableSource(src, kind, table, default_table="items")
        else:
            opened = PersistDict0JsonSource(src)
    elif _native_sqlite(src, kind, fmt):
        # Read through SQLite directly rather than the backend: one consistent read
        # transaction, no -wal/-shm files left beside the source, pickled values refused.
        path = url_path(src) if split_scheme(src)[0] is not None else src
        opened = SqliteTableSource(path, "sqlite", table or "items", default_table="items")
    elif kind == "persistdict" or kind in available():
        backend = "auto" if kind == "persistdict" else kind
        try:
            opened = NativeSource(
                src, backend=backend, fmt=fmt, table=table, trust_pickle=trust_pickle
            )
        except ValueError as exc:
            if source != "auto" or "can't tell which backend" not in str(exc):
                raise
            raise ValueError(
                f"{exc}. If another library wrote it, name its kind with --from "
                f"(Python: source=): {', '.join(KINDS)}"
            ) from exc
    else:
        raise ValueError(
            f"unknown source kind {source!r}; choose one of: {', '.join(KINDS)}, "
            f"or a backend name: {', '.join(available())}"
        )
    if opened.needs_pickle and not trust_pickle:
        opened.close()
        raise UntrustedPickleError(refusal(opened.label, opened.pickle_reason))
    opened.trust_pickle = trust_pickle
    return opened
