"""Which backend serves a target: URL scheme, then file suffix, then the file's first bytes.

Pickle is never chosen here: loading it runs code, so it must be asked for by name.
"""

from __future__ import annotations

import dbm
import os
import sqlite3
import urllib.parse
from collections.abc import Callable

from persistdict.backends import SNAPSHOT_FORMATS, available, loaded_classes
from persistdict.backends.base import BackendBase
from persistdict.fileio import resolve_data_path
from persistdict.urls import split_scheme

__all__ = ["SQLITE_HEADER", "detect_backend", "is_dbm_sqlite3", "sniff_file"]

_HEAD = 64
#: The first 16 bytes of every SQLite database file (and of no other format here).
SQLITE_HEADER = b"SQLite format 3\x00"


def is_dbm_sqlite3(path: str) -> bool:
    """Whether ``path`` is a ``dbm.sqlite3`` database, the default dbm of Python 3.13+.

    It is a SQLite file, so its header alone can't tell it from the sqlite backend's
    files: it is one whose only table is ``Dict`` with BLOB ``key`` and ``value``
    columns (the sqlite backend's tables have a TEXT key). Nothing is written to it.
    """
    try:
        with open(path, "rb") as f:
            header = f.read(20)
    except OSError:
        return False
    if not header.startswith(SQLITE_HEADER):
        return False
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
    if len(header) == 20 and header[18] == 2 and not os.path.exists(path + "-wal"):
        # A WAL file closed cleanly: immutable reads it without leaving -wal/-shm beside it.
        uri += "&immutable=1"
    try:
        cx = sqlite3.connect(uri, uri=True)
        try:
            tables = [
                row[0] for row in cx.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            if tables != ["Dict"]:
                return False
            columns = {row[1]: row[2].upper() for row in cx.execute('PRAGMA table_info("Dict")')}
        finally:
            cx.close()
    except sqlite3.Error:
        return False
    return columns == {"key": "BLOB", "value": "BLOB"}


def _claims(claimed: Callable[[type[BackendBase]], bool]) -> type[BackendBase] | None:
    """The first backend for which ``claimed`` is true: built-ins and registered ones first,
    installed ones only if none of those (reading entry points costs an import)."""
    for third_party in (False, True):
        for cls in loaded_classes(include_third_party=third_party):
            if claimed(cls):
                return cls
    return None


def sniff_file(path: str) -> str | None:
    """Name the backend whose format the existing file at ``path`` has, or ``None``.

    Each backend is asked in registry order (``recognizes``); pickle never says yes."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD)
    except (IsADirectoryError, FileNotFoundError, PermissionError):
        head = b""
    for cls in loaded_classes():
        if cls.recognizes(path, head):
            return cls.name
    return None


def detect_backend(target: str | os.PathLike[str], fmt: str | None = None) -> str:
    """Return the backend name for ``target``; ``ValueError`` listing the choices if unknown."""
    if fmt is not None:
        if fmt not in SNAPSHOT_FORMATS:
            *first, last = map(repr, SNAPSHOT_FORMATS)
            raise ValueError(f"format must be {', '.join(first)} or {last}, not {fmt!r}")
        return fmt
    text = os.fspath(target)
    scheme, _ = split_scheme(text) if isinstance(text, str) else (None, text)
    if scheme is not None:
        cls = _claims(lambda candidate: scheme in candidate.schemes)
        if cls is None:
            raise _unknown(
                lambda backend, _: (
                    f"no backend handles URLs starting {scheme}://; choose "
                    f"{backend} one of: {', '.join(available())}"
                )
            )
        return cls.name
    suffix = os.path.splitext(text)[1].lower()
    if suffix:
        cls = _claims(lambda candidate: suffix in candidate.suffixes)
        # Python 3.13+'s dbm (shelve) writes SQLite files, named as given: a .db file may be
        # dbm's, which its content then tells (SqliteBackend.owns).
        if cls is not None and cls.owns(text):
            return cls.name
    # A link another user planted in a shared sticky folder is refused before its target's
    # first bytes are read (PermissionError naming it).
    resolve_data_path(text)
    if os.path.exists(text) or dbm.whichdb(text):
        name = sniff_file(text)
        if name is not None:
            return name
        raise _unknown(
            lambda backend, format_: (
                f"can't tell which backend stores {text!r}: its extension "
                f"and its first bytes match none. Pass {backend} one of: "
                f"{', '.join(available())}, or {format_}"
            )
        )
    raise _unknown(
        lambda backend, format_: (
            f"can't tell which backend to use for {text!r} from its "
            f"extension. Use .json, .db, .sqlite, .csv or .lmdb, a URL, or pass {backend} one of: "
            f"{', '.join(available())} (or {format_})"
        )
    )


def _unknown(say: Callable[[str, str], str]) -> ValueError:
    """The ``ValueError`` for a target no backend claims, its remedy in the caller's words:
    ``say(backend, format)`` is called with the API's keyword arguments, then with the
    command line's options (kept as ``cli_message``)."""
    error = ValueError(say("backend=", "format=" + "|".join(map(repr, SNAPSHOT_FORMATS))))
    cli_message = say("--backend", "--format " + "|".join(SNAPSHOT_FORMATS))
    error.cli_message = cli_message  # type: ignore[attr-defined]
    return error
