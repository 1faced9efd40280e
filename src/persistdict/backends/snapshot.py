"""Shared base of the whole-file formats (json, csv, pickle).

A snapshot backend holds the live objects in a ``dict`` and writes the whole file on
``flush()``, so ``d["a"]["b"] = 1`` persists exactly as it would in a plain dict. The writer
holds an inter-process lock for as long as the dict is open; readers (``flag="r"``) take no
lock and see whole versions only, because every write replaces the file atomically.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from persistdict.backends.base import BackendBase, fork_generation
from persistdict.errors import ClosedError, CorruptError
from persistdict.fileio import atomic_write, remove_stale_temps
from persistdict.locking import FileLock

__all__ = ["SnapshotBackend"]

DEFAULT_TIMEOUT = 10.0


class SnapshotBackend(BackendBase):
    """A dict in memory, saved whole to one file.

    Subclasses define ``encode``, ``decode`` and ``check_value``.
    """

    stores_objects: ClassVar[bool] = True
    native_transactions: ClassVar[bool] = True
    format_name: ClassVar[str] = "snapshot"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        flag: str = "c",
        mode: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.path = os.fspath(path)
        self.flag = flag
        self.read_only = flag == "r"
        self._mode = mode
        self._data: dict[str, Any] = {}
        self._digest = b""
        self._lock: FileLock | None = None
        self._fork_generation = fork_generation()
        self._saved: list[dict[str, Any]] = []
        exists = os.path.exists(self.path)
        if not exists and flag in ("r", "w"):
            raise FileNotFoundError(
                errno.ENOENT,
                f"no such file: {self.path!r}; open it with flag='c' to create it",
                self.path,
            )
        if not self.read_only:
            self._lock = FileLock(self.path, timeout)
            self._lock.acquire()
        try:
            if not self.read_only:
                remove_stale_temps(self.path)
            if flag == "n" or not exists:
                self._write(self.encode({}))
            else:
                self._load()
        except BaseException:
            self._release()
            raise

    # Format hooks.

    def encode(self, data: dict[str, Any]) -> bytes:
        raise NotImplementedError

    def decode(self, raw: bytes) -> dict[str, Any]:
        """Parse a whole file; raise ``ValueError`` describing the first fault."""
        raise NotImplementedError

    def check_value(self, key: str, value: Any) -> None:
        """Raise ``TypeError``/``ValueError`` if ``value`` can't be stored in this format."""

    # Loading and saving.

    def _load(self) -> None:
        with open(self.path, "rb") as f:
            raw = f.read()
        try:
            data = self.decode(raw)
        except CorruptError:
            raise
        except Exception as exc:
            raise CorruptError(
                f"{self.path!r} is not a valid {self.format_name} file: {exc}. It was left "
                "untouched; repair it, restore a backup, or open with flag='n' to start empty"
            ) from exc
        self._data = data
        self._digest = hashlib.blake2b(raw).digest()

    def _write(self, raw: bytes) -> None:
        atomic_write(self.path, raw, self._mode)
        self._digest = hashlib.blake2b(raw).digest()

    def refresh(self) -> None:
        """Reload the file, for a reader that wants to see a writer's later flushes."""
        if not self.read_only:
            raise ValueError("refresh() is for dicts opened with flag='r'; a writer is current")
        self._load()

    def flush(self) -> None:
        if self.read_only:
            return
        self._check_process()
        raw = self.encode(self._data)
        # Nested objects can change without passing through set(), so compare the encoded
        # bytes rather than trusting a dirty flag; unchanged data writes nothing.
        if hashlib.blake2b(raw).digest() != self._digest:
            self._write(raw)

    def close(self) -> None:
        if self._lock is None and not self.read_only:
            return
        if self._fork_generation == fork_generation():
            self.flush()
        self._release()

    def _release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def _check_process(self) -> None:
        if self._fork_generation != fork_generation():
            raise ClosedError(
                f"{self.path!r} was opened for writing in the parent process before fork(); "
                "the child must open it again with persistdict.open()"
            )

    # The mapping operations.

    def get(self, key: str) -> Any:
        return self._data[key]

    def set(self, key: str, value: Any) -> None:
        self.check_writable()
        self.check_value(key, value)
        self._data[key] = value

    def set_many(self, items: Iterable[tuple[str, Any]]) -> None:
        self.check_writable()
        batch = list(items)
        for key, value in batch:  # check all before changing anything: all or nothing
            self.check_value(key, value)
        self._data.update(batch)

    def delete(self, key: str) -> None:
        self.check_writable()
        del self._data[key]

    def contains(self, key: str) -> bool:
        return key in self._data

    def iter_keys(self) -> Iterator[str]:
        # A copy of the keys: the live dict may change between two steps of the caller.
        return iter(list(self._data))

    def iter_items(self) -> Iterator[tuple[str, Any]]:
        return iter(list(self._data.items()))

    def count(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self.check_writable()
        self._data.clear()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.check_writable()
        # A deep copy: nested objects changed inside the block must roll back too.
        self._saved.append(copy.deepcopy(self._data))
        try:
            yield
        except BaseException:
            self._data = self._saved.pop()
            raise
        self._saved.pop()
        if not self._saved:
            self.flush()

    def describe(self) -> str:
        return f"{self.name} {self.path!r}" + (" read-only" if self.read_only else "")
