"""Errors raised by persistdict.

Error                                 base of everything persistdict raises on purpose
├── CorruptError (also ValueError)    the file or table can't be parsed; it was left untouched
├── ClosedError  (also ValueError)    the dict was used after close()
├── ReadOnlyError                     a write to a dict opened with flag="r"
├── LockedError                       another process held the lock past the timeout
└── UntrustedPickleError              data needs unpickling and nobody said it is trusted

Errors from storage drivers (sqlite3, redis-py, psycopg) are translated into these at the
backend boundary, with the original kept as ``__cause__``. Plain ``KeyError``, ``TypeError``,
``ValueError`` and ``OSError`` keep their usual meaning, as they would on a ``dict`` or a file.
"""

from __future__ import annotations

__all__ = [
    "ClosedError",
    "CorruptError",
    "Error",
    "LockedError",
    "ReadOnlyError",
    "UntrustedPickleError",
]


class Error(Exception):
    """Base class of the errors persistdict raises on purpose."""


class CorruptError(Error, ValueError):
    """The stored data can't be read. persistdict never writes over such a file."""


class ClosedError(Error, ValueError):
    """An operation on a dict that has been closed."""


class ReadOnlyError(Error):
    """A write to a dict opened with ``flag="r"``."""


class LockedError(Error):
    """Another process held the write lock for longer than ``timeout`` seconds."""


class UntrustedPickleError(Error):
    """Reading the data means unpickling it, which runs code chosen by whoever wrote it, and
    the caller did not opt in (``trust_pickle=True``, ``--trust-pickle``)."""
