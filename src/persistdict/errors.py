"""Errors raised by persistdict.

Error                                 base of everything persistdict raises on purpose
├── CorruptError (also ValueError)    the file or table can't be parsed; it was left untouched
├── ClosedError  (also ValueError)    the dict was used after close()
├── ReadOnlyError                     a write to a dict opened with flag="r"
├── LockedError                       another process held the lock past the timeout
├── ConflictError                     another program changed the file since it was loaded
└── UntrustedPickleError              data needs unpickling and nobody said it is trusted

Errors from storage drivers (sqlite3, redis-py, psycopg) are translated into these at the
backend boundary, with the original kept as ``__cause__``. Plain ``KeyError``, ``TypeError``,
``ValueError`` and ``OSError`` keep their usual meaning, as they would on a ``dict`` or a file.
A missing file is a ``FileNotFoundError`` whose ``filename`` is the path.
"""

from __future__ import annotations

import errno

__all__ = [
    "ClosedError",
    "ConflictError",
    "CorruptError",
    "Error",
    "LockedError",
    "ReadOnlyError",
    "UntrustedPickleError",
]


class Error(Exception):
    """Base class of the errors persistdict raises on purpose.

    Args:
        cli_message: the message the ``persistdict`` command prints instead of ``str(exc)``,
            when the remedy differs there (``--recover`` rather than ``recover=True``).
    """

    #: What the command line shows; ``None`` when ``str(exc)`` suits it as it is.
    cli_message: str | None = None

    def __init__(self, *args: object, cli_message: str | None = None) -> None:
        super().__init__(*args)
        if cli_message is not None:
            self.cli_message = cli_message


class CorruptError(Error, ValueError):
    """The stored data can't be read. persistdict never writes over such a file."""


class ClosedError(Error, ValueError):
    """An operation on a dict that has been closed."""


class ReadOnlyError(Error):
    """A write to a dict opened with ``flag="r"``, or to storage this process may not write
    (a file without write permission, a read-only database or replica)."""


class LockedError(Error):
    """Another process held the write lock for longer than ``timeout`` seconds, or this
    thread already holds it through another dict."""


class ConflictError(Error):
    """A snapshot file (json, csv, pickle) was changed on disk by another program (an editor,
    a script) since this dict loaded or saved it, so saving would overwrite that change.

    Nothing was written. ``d.refresh()`` loads the version on disk, dropping this dict's
    unsaved changes; ``d.flush(force=True)`` writes this dict's data over it.
    """


def closed_error(what: str) -> ClosedError:
    """The error for using ``what`` (a dict's or a backend's label) after ``close()``."""
    return ClosedError(f"{what} is closed; open it again with persistdict.open()")


def not_a_str_key(key: object) -> TypeError:
    """The error for a key that is not a ``str`` (persistdict keys are), naming its type."""
    return TypeError(f"persistdict keys must be str, not {type(key).__name__} ({key!r:.80})")


def no_such(
    what: str, path: str, hint: str = "open it with flag='c' to create it"
) -> FileNotFoundError:
    """The error for a missing file or folder, naming ``path`` once.

    ``str()`` reads ``[Errno 2] No such file (open it with flag='c' to create it): 'x.json'``;
    ``filename`` is ``path``, as in the ``OSError`` of a failed ``open()``.
    """
    return FileNotFoundError(errno.ENOENT, f"No such {what} ({hint})", path)


class UntrustedPickleError(Error):
    """Reading the data means unpickling it, which runs code chosen by whoever wrote it, and
    the caller did not opt in (``trust_pickle=True``, ``--trust-pickle``)."""
