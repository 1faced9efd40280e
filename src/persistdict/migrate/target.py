"""Writing a whole destination so that a failure leaves nothing half-written.

Two ways, chosen by what the destination is:

* a file or folder that does not exist yet is built under a temporary folder beside it and
  moved into place only once complete and closed (each moved file fsynced first, the folder
  after), so a failed or interrupted run leaves no destination at all;
* an existing file, or a server (Redis, PostgreSQL), is written inside one
  ``transaction()``: on SQLite, LMDB, Redis and PostgreSQL that is a storage transaction; a
  snapshot file is replaced once, atomically, at the end. dbm has no transactions: there
  the undo journal restores it after an error, but not after a crash mid-way.
"""

from __future__ import annotations

import contextlib
import dbm
import os
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import persistdict
from persistdict.backends import backend_class
from persistdict.detect import detect_backend
from persistdict.fileio import fsync_directory, fsync_file
from persistdict.locking import FileLock
from persistdict.mapping import PersistDict
from persistdict.migrate.sqlite_sources import connect_read_only
from persistdict.urls import split_scheme, url_path

__all__ = ["EXISTING", "DestinationExistsError", "file_identities", "local_path", "writing"]

EXISTING = ("refuse", "replace", "merge")


class DestinationExistsError(persistdict.Error, FileExistsError):
    """The destination already holds data and the caller did not say what to do with it."""


def _file_path(target: str, factory: Any) -> str | None:
    """The local path the destination lives at, or ``None`` for a server or memory."""
    if not getattr(factory, "persistent", True):
        return None
    # A backend taking whole URLs is a server unless it also claims file suffixes (LMDB reads
    # options from its URL but lives in a local folder).
    if getattr(factory, "takes_url", False) and not getattr(factory, "suffixes", ()):
        return None
    return url_path(target) if split_scheme(target)[0] is not None else target


def local_path(target: str, backend: str = "auto", fmt: str | None = None) -> str | None:
    """The local path ``target`` names (a path, or a file URL such as ``sqlite:///x.db``), or
    ``None`` for a server, memory, or a URL no backend claims."""
    if split_scheme(target)[0] is None:
        return target
    try:
        chosen = detect_backend(target, fmt) if backend == "auto" else backend
        return _file_path(target, backend_class(chosen))
    except (ValueError, KeyError):
        return None


# The files a store at PATH may consist of: dbm's (.dat/.dir/.bak, .db, .pag), and the
# database of a diskcache folder.
_COMPANIONS = (".dat", ".dir", ".bak", ".db", ".pag")


def file_identities(path: str) -> set[tuple[int, int]]:
    """(device, inode) of every existing file or folder the store at ``path`` consists of,
    symlinks followed: two spellings of one store (relative, absolute, through a link, as a
    URL) give the same identities."""
    candidates = [path, *(path + suffix for suffix in _COMPANIONS)]
    if os.path.isdir(path):
        candidates.append(os.path.join(path, "cache.db"))
    found = set()
    for candidate in candidates:
        try:
            st = os.stat(candidate)
        except (OSError, ValueError):
            continue
        found.add((st.st_dev, st.st_ino))
    return found


def _exists(path: str) -> bool:
    return os.path.exists(path) or bool(dbm.whichdb(path))


@contextmanager
def writing(
    target: str,
    *,
    backend: str = "auto",
    fmt: str | None = None,
    table: str = "items",
    existing: str = "refuse",
    **options: Any,
) -> Iterator[tuple[PersistDict, str]]:
    """Yield a dict to fill and a label naming the destination; on a normal exit the dict
    becomes the destination, on an exception nothing changes.

    Args:
        target: a path or URL, as for :func:`persistdict.open`.
        backend: the destination's backend name, or ``"auto"`` to detect it as ``open`` does.
        fmt: ``"json"``, ``"csv"`` or ``"pickle"`` for a file whose extension says nothing.
        table: the table (sqlite, postgres) or hash (redis) to fill.
        existing: what to do when the destination already holds keys: ``"refuse"``
            (raise :class:`DestinationExistsError`), ``"replace"`` them all, or ``"merge"``
            (keys written here win).
        **options: more options for :func:`persistdict.open`.
    """
    if existing not in EXISTING:
        raise ValueError(f"existing must be one of {EXISTING}, not {existing!r}")
    chosen = detect_backend(target, fmt) if backend == "auto" else backend
    factory = backend_class(chosen)
    path = _file_path(target, factory)
    if path is not None and not _exists(path):
        with _new_file(path, chosen, table, options) as pair:
            yield pair
        return
    if path is not None and getattr(factory, "stores_objects", False):
        with _new_snapshot(path, chosen, existing, options) as pair:
            yield pair
        return
    table_was_new = path is not None and chosen == "sqlite" and not _has_table(path, table)
    if existing == "refuse" and not table_was_new:
        _refuse_if_filled(target, chosen, table, options)
    d = persistdict.open(target, "c", backend=chosen, table=table, **options)
    try:
        with d.transaction():
            if existing == "replace":
                d.clear()
            yield d, d.backend.describe()
    except BaseException:
        d.close()
        if table_was_new and path is not None:
            _drop_if_empty(path, table)
        raise
    d.close()


def _refuse_if_filled(target: str, backend: str, table: str, options: dict[str, Any]) -> None:
    # Looked at read-only: opening a snapshot file for writing may rewrite it on close.
    with persistdict.open(target, "r", backend=backend, table=table, **options) as d:
        if len(d):
            raise _exists_error(_label(d), len(d))


def _label(d: PersistDict) -> str:
    return d.backend.describe().replace(" read-only", "")


def _exists_error(label: str, count: int) -> DestinationExistsError:
    return DestinationExistsError(
        f"{label} already holds {count} keys; pass --replace to replace them or --merge to "
        "add to them (Python: existing='replace' or 'merge')"
    )


@contextmanager
def _new_snapshot(
    path: str, backend: str, existing: str, options: dict[str, Any]
) -> Iterator[tuple[PersistDict, str]]:
    # An existing snapshot file is replaced by a whole new one, built beside it under its
    # writer lock. Opening it for writing instead would rewrite it on close even after a
    # failure (in the backend's own layout), and the promise is: a failure changes no byte.
    lock = FileLock(path, options.get("timeout", 10.0))
    lock.acquire()
    try:
        with persistdict.open(path, "r", backend=backend, **options) as current:
            if existing == "refuse" and len(current):
                raise _exists_error(_label(current), len(current))
            keep = {} if existing == "replace" else dict(current.items())
        with _new_file(path, backend, "items", options, replacing=True) as (d, label):
            d.update(keep)
            yield d, label
    finally:
        lock.release()


@contextmanager
def _new_file(
    path: str, backend: str, table: str, options: dict[str, Any], *, replacing: bool = False
) -> Iterator[tuple[PersistDict, str]]:
    folder, name = os.path.split(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(2, f"no such folder: {folder!r} (for {path!r})", folder)
    scratch = tempfile.mkdtemp(dir=folder, prefix=f".{name}.persistdict-convert-")
    try:
        if backend == "sqlite" and "synchronous" not in options:
            # Nothing reads the scratch file, and every file is fsynced before it is moved
            # into place, so per-commit syncs would only slow the import down.
            options = {**options, "synchronous": "OFF"}
        building = os.path.join(scratch, name)
        d = persistdict.open(building, "n", backend=backend, table=table, **options)
        label = d.backend.describe().replace(repr(building), repr(path))
        try:
            with d.transaction():
                yield d, label
        finally:
            d.close()
        if replacing:
            # Keep the permission bits of the file being replaced, as every rewrite does.
            os.chmod(os.path.join(scratch, name), stat.S_IMODE(os.stat(path).st_mode))
        _move_into_place(scratch, folder, name, replacing=replacing)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _move_into_place(scratch: str, folder: str, name: str, *, replacing: bool = False) -> None:
    # The backend may have made several files (dbm.dumb: .dat, .dir, .bak); move the ones
    # named after the destination and leave lock files behind.
    produced = sorted(e for e in os.listdir(scratch) if e == name or e.startswith(name + "."))
    for entry in produced:
        source = os.path.join(scratch, entry)
        if os.path.isfile(source):
            fd = os.open(source, os.O_RDONLY)
            try:
                fsync_file(fd)
            finally:
                os.close(fd)
    for entry in produced:
        final = os.path.join(folder, entry)
        if os.path.lexists(final) and not (replacing and entry == name):
            raise DestinationExistsError(
                f"{final!r} appeared while the copy ran; the copy was not moved into place"
            )
    for entry in produced:
        os.replace(os.path.join(scratch, entry), os.path.join(folder, entry))
    fsync_directory(folder)


def _has_table(path: str, table: str) -> bool:
    try:
        cx = connect_read_only(path)
    except (OSError, persistdict.CorruptError):
        return False  # open() below reports it
    try:
        row = cx.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        return row is not None
    except sqlite3.Error:
        return False
    finally:
        cx.close()


def _drop_if_empty(path: str, table: str) -> None:
    # open() created the table before the transaction began; a failed copy into a table
    # that did not exist should not leave an empty one behind.
    with contextlib.suppress(sqlite3.Error):
        cx = sqlite3.connect(path, isolation_level=None)
        try:
            if cx.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] == 0:
                cx.execute(f'DROP TABLE "{table}"')
        finally:
            cx.close()
