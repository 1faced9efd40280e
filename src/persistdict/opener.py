"""``persistdict.open``: from a path or URL to a ready [`PersistDict`][persistdict.PersistDict]."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from persistdict.backends import backend_class, declared_class
from persistdict.backends.base import check_flag, check_table_name
from persistdict.detect import detect_backend
from persistdict.locking import check_timeout
from persistdict.mapping import PersistDict
from persistdict.serializers import Serializer, serializer_for
from persistdict.urls import redacted_errors, split_scheme

__all__ = ["open"]


def open(
    target: str | os.PathLike[str],
    flag: str = "c",
    mode: int | None = None,
    *,
    backend: str = "auto",
    format: str | None = None,
    serializer: Serializer | str | None = None,
    lock: bool = True,
    table: str = "items",
    commit_every: int = 0,
    writeback: bool | None = None,
    timeout: float | None = None,
    **backend_options: Any,
) -> PersistDict:
    """Open a persistent dict at ``target``, a path or a URL.

    Args:
        target: ``"state.json"``, ``"data.db"``, ``"sqlite:///data.db"``,
            ``"redis://host:6379/0"``, ``"postgresql://user@host/db"``, ``"memory://"``...
        flag: ``"r"`` read-only, must exist; ``"w"`` read-write, must exist; ``"c"``
            read-write, created if missing; ``"n"`` read-write, always starts empty.
        mode: permission bits for a file this call creates, less the umask (default 0o666).
        backend: a backend name, or ``"auto"``: URL scheme, then extension (``.json``,
            ``.db``/``.sqlite``/``.sqlite3``, ``.csv``, ``.lmdb``), then the content of an
            existing file. Detection never picks pickle.
        format: ``"json"``, ``"csv"`` or ``"pickle"`` for a file whose extension says nothing.
        serializer: how per-key backends encode values (default JSON; ``"pickle"`` opts in).
        lock: guard the dict with a re-entrant lock so threads may share it (default).
            ``lock=False`` is the fast path for a dict only one thread uses.
        table: the dict's table (sqlite, postgres) or hash (redis) name.
        commit_every: sqlite: commit after every N writes instead of every write.
        writeback: per-key backends: cache read values and save changed ones on flush/close.
        timeout: seconds to wait for a lock another process holds (a snapshot file's or dbm
            writer lock, SQLite's write lock, a Redis or PostgreSQL transaction) before
            [`LockedError`][persistdict.LockedError]. ``None`` means the backend's default, 10
            seconds. Backends with nothing to wait for (memory) ignore it.
        **backend_options: passed to the backend, e.g. ``synchronous="FULL"`` for sqlite, or
            ``recover=True`` for json/csv/pickle (restore the previous generation of a damaged
            file).

    Raises:
        FileNotFoundError: flag ``"r"``/``"w"`` and nothing at ``target``, or no table
            ``table`` there (sqlite, postgres; the message names the tables that are).
        CorruptError: the file exists but can't be parsed; it is left untouched.
        LockedError: another process holds the write lock past ``timeout``.
        ValueError: unknown backend or extension, bad flag or table name.
    """
    check_flag(flag)
    check_table_name(table)
    if isinstance(target, bytes):
        raise TypeError("target must be a str path, a PathLike or a URL, not bytes")
    text = os.fspath(target)
    chosen = detect_backend(text, format) if backend == "auto" else backend
    factory = backend_class(chosen)
    contract = declared_class(chosen)
    if contract.stores_objects and serializer is not None:
        raise ValueError(
            f"the {chosen} backend encodes its whole file itself and takes no serializer; "
            "serializers apply to per-key backends such as sqlite"
        )
    codec = None if contract.stores_objects else serializer_for(serializer)

    options: dict[str, Any] = {"flag": flag, "mode": mode, "table": table}
    options["commit_every"] = commit_every
    options.update(backend_options)
    if timeout is not None:  # left out otherwise, so a URL's ?timeout= can still set it
        options["timeout"] = check_timeout(timeout)
    location, arguments = contract.open_arguments(text, options, codec)
    # Whatever backend and driver raise, the chain may echo the URL's password.
    with redacted_errors(text) if split_scheme(text)[0] is not None else contextlib.nullcontext():
        store = factory(location, **arguments)
    try:
        return PersistDict(store, serializer=codec, lock=lock, writeback=writeback)
    except BaseException:
        store.close()
        raise
