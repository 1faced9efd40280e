"""Reads of a snapshot dict (json, csv, pickle) at the speed of a plain ``dict``.

A snapshot backend holds the whole file as one live ``dict`` of the objects themselves. Read
through PersistDict's methods (a Python call, the lock, the closed check, the backend's
method), ``d[k]`` costs two to three times a dict's. So while such a dict is open and no
``transaction()`` runs, its instance has a class of its own, a subclass of PersistDict made
for it, whose reads are the live dict's: ``__getitem__`` and ``__len__`` are that dict's bound
C methods (a bound built-in method is no descriptor, so the slot calls it with the key
alone), and ``in``, ``get``, iteration and the views are small functions over it. Writes,
``flush()`` and the rest are PersistDict's own, unchanged.

Why those reads need no lock: each write changes the live dict in one C-level call (store,
delete, ``update``, ``clear``) made under the dict's lock, and no other thread runs in the
middle of one, so a read sees the data before or after a write, as it would have after
waiting for the lock. Iteration walks the live dict itself, without copying it: taking the
lock once, it marks the dict shared, and the next write copies it first and changes the copy,
which takes its place (copy on write), so a loop sees the keys of the moment it began and
never "dictionary changed size during iteration", whoever writes meanwhile. What does need
the lock gets PersistDict's class back:

- ``close()``: every later read raises ``ClosedError``;
- ``transaction()``: other threads wait for the block, and see neither its writes before
  they are saved nor writes it rolls back; the class comes back when the outermost block
  ends, under the lock.

When the backend replaces its dict (``refresh()``, a copy on write), it tells this module,
which points the class at the new one, before any change to it; a read meanwhile sees the old
version whole.

The answers are PersistDict's: a missing key raises ``KeyError``; a key that is not a
``str`` raises ``TypeError`` naming its type when read (the live dict's ``__missing__``) and
is simply absent for ``in`` and ``get`` (an unhashable one too). Only a dict of the stock
snapshot backends gets this, and only if neither PersistDict's reads nor the backend's are
overridden by a subclass.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Iterator, KeysView, ValuesView
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from persistdict.backends.base import BackendBase
from persistdict.backends.snapshot import SnapshotBackend

if TYPE_CHECKING:
    from persistdict.mapping import PersistDict

__all__ = ["FastReads", "install", "on_close", "paused"]

_T = TypeVar("_T")

# What the per-dict class replaces, and what must be the stock ones for that to be right.
_DICT_READS = ("__getitem__", "__contains__", "__len__", "__iter__", "get", "keys", "values")
_DICT_HOOKS = ("_iter_items", "transaction", "close", "refresh")
_BACKEND_READS = ("get", "contains", "count", "iter_keys", "iter_items", "refresh")


class _Keys(KeysView[str]):
    _mapping: PersistDict

    # KeysView's __iter__ is a generator, a Python step per key; this one is the dict's own.
    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping)


class _Values(ValuesView[Any]):
    _mapping: PersistDict

    def __iter__(self) -> Iterator[Any]:
        # The items' iterator (a copy, as PersistDict's), each value picked in C.
        return map(operator.itemgetter(1), self._mapping._iter_items())


def _keys(self: PersistDict) -> KeysView[str]:
    return _Keys(self)


def _values(self: PersistDict) -> ValuesView[Any]:
    return _Values(self)


class FastReads:
    """The per-dict class of one PersistDict and the state it is in."""

    def __init__(
        self,
        base: type[PersistDict],
        backend: SnapshotBackend,
    ) -> None:
        self.base = base
        self.backend: SnapshotBackend | None = backend
        self.share: Callable[[], dict[str, Any]] = backend.share_data
        reads = self

        # Iteration walks the live dict itself, which no write changes from then on (the
        # next one copies it first): the lock only for that hand-over, once per loop.
        # The dict's lock is read from the dict each time: a forked child gets a new one.
        def iterate(d: PersistDict) -> Iterator[str]:
            with d._lock:
                return iter(reads.share())

        def iter_items(d: PersistDict) -> Iterator[tuple[str, Any]]:
            with d._lock:
                return iter(reads.share().items())

        namespace: dict[str, Any] = {
            "__module__": base.__module__,
            "__qualname__": base.__qualname__,
            "__iter__": iterate,
            "_iter_items": iter_items,
            "keys": _keys,
            "values": _values,
        }
        # Named as PersistDict; made by its metaclass (ABCMeta), as a subclass would be.
        self.fast: type[PersistDict] = type(base)(base.__name__, (base,), namespace)  # type: ignore[misc]
        backend.watch_data(self._bind)

    def _bind(self, data: dict[str, Any]) -> None:
        # Point the class's reads at ``data``. Each assignment is atomic; a reader between two
        # of them sees the old dict or the new one, both whole.
        lookup: Callable[[Any, Any], Any] = data.get

        def contains(self: object, key: object) -> bool:
            try:
                return key in data
            except TypeError:  # unhashable: not a key, as PersistDict answers
                return False

        def get(self: object, key: object, default: Any = None) -> Any:
            try:
                return lookup(key, default)
            except TypeError:
                return default

        fast: Any = self.fast
        fast.__getitem__ = data.__getitem__
        fast.__len__ = data.__len__
        fast.__contains__ = contains
        fast.get = get

    def retire(self, d: PersistDict) -> None:
        """Give ``d`` its ordinary class for good (it is closing) and let go of the data."""
        d.__class__ = self.base
        if self.backend is not None:
            self.backend.unwatch_data(self._bind)
            self.backend = None
        self._bind({})
        self.share = dict  # an empty one: the class holds nothing of the data any more


def install(d: PersistDict, backend: BackendBase) -> FastReads | None:
    """Switch ``d`` to fast reads if its backend is a stock snapshot; return the switch."""
    base = type(d)
    if not isinstance(backend, SnapshotBackend) or d._cache is not None:
        return None
    from persistdict.mapping import PersistDict

    for name in _DICT_READS + _DICT_HOOKS:
        if getattr(base, name) is not getattr(PersistDict, name):
            return None
    for name in _BACKEND_READS:
        if getattr(type(backend), name) is not getattr(SnapshotBackend, name):
            return None
    reads = FastReads(base, backend)
    d.__class__ = reads.fast
    return reads


def paused(
    d: PersistDict, reads: FastReads | None, block: contextlib.AbstractContextManager[_T]
) -> contextlib.AbstractContextManager[_T]:
    """``block`` (a transaction of ``d``) with ``d``'s ordinary, locked class while it runs."""
    if reads is None:
        return block
    return _paused(d, reads, block)


@contextmanager
def _paused(
    d: PersistDict, reads: FastReads, block: contextlib.AbstractContextManager[_T]
) -> Iterator[_T]:
    # The lock first: a thread that waited for another's block must find the fast class back
    # in place, and take it away again, before its own block starts.
    with d._lock:
        resume = type(d) is reads.fast
        if resume:
            d.__class__ = reads.base
        try:
            with block as value:
                yield value
        finally:
            if resume and reads.backend is not None:
                d.__class__ = reads.fast


def on_close(reads: FastReads | None, d: PersistDict) -> None:
    """Called by ``close()`` once the backend is closed, with the dict's lock held."""
    if reads is not None:
        reads.retire(d)
