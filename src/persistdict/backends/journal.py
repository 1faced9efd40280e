"""Transactions for backends that have none of their own: an undo journal.

``PersistDict`` runs ``transaction()`` the same way on every backend: the backend's own where
it declares ``native_transactions``, else this wrapper's. The wrapper remembers, for each key
a block writes, what was stored before the first write, and puts it back if the block raises.
That is atomic against exceptions, not against a crash midway (dbm's documented promise).

Only the writes pass through the wrapper: ``PersistDict`` reads the backend itself, so the
wrapper costs nothing on reads, and nothing at all on backends with native transactions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from persistdict.backends.base import BackendBase

__all__ = ["UndoJournal", "transactional"]

_MISSING: Any = object()


def transactional(backend: BackendBase) -> BackendBase:
    """What ``PersistDict`` writes through: ``backend`` itself if it has native transactions,
    else an ``UndoJournal`` around it."""
    return backend if backend.native_transactions else UndoJournal(backend)


class UndoJournal(BackendBase):
    """Writes to ``inner``, keeping an undo journal while ``transaction()`` blocks are open.

    Blocks nest: an inner block that raises undoes only its own writes; one that ends hands
    what it would undo to the enclosing block. The outermost block ends with ``flush()``.
    """

    #: A failed ``flush()`` at the end of the outermost block keeps the block's writes: they
    #: are in the backend already, and a later ``flush()`` saves them.
    failed_commit_keeps_writes: ClassVar[bool] = True

    def __init__(self, inner: BackendBase) -> None:
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]
        self.stores_objects = inner.stores_objects  # type: ignore[misc]
        self.persistent = inner.persistent  # type: ignore[misc]
        self.read_only = inner.read_only
        self.timeout = inner.timeout
        # One dict per open block: key -> the stored value before the block's first write to
        # it, or _MISSING where the key was absent.
        self._journals: list[dict[str, Any]] = []

    def _record(self, key: str) -> None:
        journal = self._journals[-1]
        if key not in journal:
            try:
                journal[key] = self.inner.get(key)
            except KeyError:
                journal[key] = _MISSING

    # Writes: journaled inside a block.

    def set(self, key: str, value: Any) -> None:
        if self._journals:
            self.inner.check_writable()
            self._record(key)
        self.inner.set(key, value)

    def delete(self, key: str) -> None:
        if self._journals:
            self.inner.check_writable()
            self._record(key)
        self.inner.delete(key)

    def set_many(self, items: Iterable[tuple[str, Any]]) -> None:
        if self._journals:
            items = list(items)
            for key, _ in items:
                self._record(key)
        self.inner.set_many(items)

    def clear(self) -> None:
        if self._journals:
            for key in self.inner.iter_keys():
                self._record(key)
        self.inner.clear()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.inner.check_writable()
        self._journals.append({})
        try:
            yield
        except BaseException:
            self._undo(self._journals.pop())
            raise
        journal = self._journals.pop()
        if self._journals:
            for key, old in journal.items():
                self._journals[-1].setdefault(key, old)
        else:
            self.inner.flush()

    def _undo(self, journal: dict[str, Any]) -> None:
        for key, old in journal.items():
            if old is _MISSING:
                with contextlib.suppress(KeyError):
                    self.inner.delete(key)
            else:
                self.inner.set(key, old)

    def forget_transactions(self) -> None:
        self._journals = []

    # Everything else is the backend's own.

    def get(self, key: str) -> Any:
        return self.inner.get(key)

    def contains(self, key: str) -> bool:
        return self.inner.contains(key)

    def iter_keys(self) -> Iterator[str]:
        return self.inner.iter_keys()

    def iter_items(self) -> Iterator[tuple[str, Any]]:
        return self.inner.iter_items()

    def count(self) -> int:
        return self.inner.count()

    def check_writable(self) -> None:
        self.inner.check_writable()

    @property
    def buffers_writes(self) -> bool:
        return self.inner.buffers_writes

    def check(self) -> list[str]:
        return self.inner.check()

    def describe(self) -> str:
        return self.inner.describe()

    def prepare_fork(self) -> None:
        self.inner.prepare_fork()

    def refresh(self) -> None:
        self.inner.refresh()

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()
