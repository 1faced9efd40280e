"""Which backend serves a target: URL scheme, then file suffix, then the file's first bytes.

Pickle is never chosen here: loading it runs code, so it must be asked for by name.
"""

from __future__ import annotations

import dbm
import os
import sqlite3
import urllib.parse
from collections.abc import Callable

from persistdict.backends import available, loaded_classes
from persistdict.fileio import resolve_data_path
from persistdict.urls import split_scheme

__all__ = ["detect_backend", "is_dbm_sqlite3", "sniff_file"]

_HEAD = 64
_SQLITE_HEADER = b"SQLite format 3\x00"


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
    if not header.startswith(_SQLITE_HEADER):
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


def _claims(attr: str, value: str, *, third_party: bool) -> str | None:
    for cls in loaded_classes(include_third_party=third_party):
        if value in getattr(cls, attr, ()):
            name: str = cls.name
            return name
    return None


def sniff_file(path: str) -> str | None:
    """Name the backend whose format the existing file at ``path`` has, or ``None``."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD)
    except (IsADirectoryError, FileNotFoundError, PermissionError):
        head = b""
    if head.startswith(_SQLITE_HEADER) and is_dbm_sqlite3(path):
        return "dbm"
    for cls in loaded_classes():
        if cls.name != "pickle" and getattr(cls, "sniff", None) and cls.sniff(head):
            found: str = cls.name
            return found
    if dbm.whichdb(path):
        return "dbm"
    return None


def detect_backend(target: str | os.PathLike[str], fmt: str | None = None) -> str:
    """Return the backend name for ``target``; ``ValueError`` listing the choices if unknown."""
    if fmt is not None:
        if fmt not in ("json", "csv", "pickle"):
            raise ValueError(f"format must be 'json', 'csv' or 'pickle', not {fmt!r}")
        return fmt
    text = os.fspath(target)
    scheme, _ = split_scheme(text) if isinstance(text, str) else (None, text)
    if scheme is not None:
        name = _claims("schemes", scheme, third_party=False) or _claims(
            "schemes", scheme, third_party=True
        )
        if name is None:
            raise _unknown(
                lambda backend, _: (
                    f"no backend handles URLs starting {scheme}://; choose "
                    f"{backend} one of: {', '.join(available())}"
                )
            )
        return name
    suffix = os.path.splitext(text)[1].lower()
    if suffix:
        name = _claims("suffixes", suffix, third_party=False) or _claims(
            "suffixes", suffix, third_party=True
        )
        if name == "sqlite" and is_dbm_sqlite3(text):
            return "dbm"  # Python 3.13+'s dbm (shelve) writes SQLite files, named as given
        if name is not None:
            return name
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
    error = ValueError(say("backend=", "format='json'|'csv'|'pickle'"))
    error.cli_message = say("--backend", "--format json|csv|pickle")  # type: ignore[attr-defined]
    return error
