"""PersistDict: the ``MutableMapping`` that composes a backend with a serializer.

Reads from per-key backends return fresh copies: ``d["a"]["b"] = 1`` changes only the copy,
as with ``shelve``, unless the dict was opened with ``writeback=True``, which caches every
value read or stored (through ``d[k]``, ``get``, ``setdefault``, ``items()``, ``values()``)
and writes back, on ``flush()``/``close()``, each cached value whose encoding changed; then
``flush()`` empties the cache, as shelve's ``sync()`` does. Snapshot backends hand out the
live objects, so nested changes persist on the next flush.

A dict dropped without ``close()`` is closed when collected, with a ``ResourceWarning``, as
a file is; the exit registry holds it strongly only while it may have unsaved writes.

With ``lock=True`` (default) every operation holds a per-dict re-entrant lock, so one dict may
be shared by threads; ``lock=False`` skips it for single-threaded code. Reads that need no
lock skip it: those of backends that serialize reads themselves (``thread_safe_reads``), and
those of json/csv/pickle dicts, which read the live dict (see ``persistdict.snapshot_reads``;
they still wait for another thread's ``transaction()``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
import warnings
from collections.abc import (
    ItemsView,
    Iterator,
    KeysView,
    Mapping,
    MutableMapping,
    ValuesView,
)
from contextlib import contextmanager
from typing import Any, NoReturn

from persistdict import (
    lifecycle,
    snapshot_reads,  # hook: lock-free snapshot reads
)
from persistdict.backends.base import Backend, BackendBase, adapt
from persistdict.backends.journal import transactional
from persistdict.backends.snapshot import SnapshotBackend
from persistdict.errors import CorruptError, closed_error, not_a_str_key
from persistdict.locking import DEFAULT_TIMEOUT
from persistdict.serializers import Serializer, serializer_for, why_not_json

__all__ = ["PersistDict"]

_MISSING: Any = object()
_CHUNK = 256  # keys fetched per lock hold while iterating


def _unencodable(key: str, exc: Exception) -> Exception:
    kind = TypeError if isinstance(exc, TypeError) else ValueError
    return kind(f"can't store the value for key {key!r}: {why_not_json(exc)}")


def _not_a_pair(i: int, item: object, exc: Exception) -> NoReturn:
    # dict's split: an element that is no sequence is a TypeError, one of another length a
    # ValueError (unpacking raised the same kinds).
    if isinstance(exc, TypeError):
        raise TypeError(
            f"update() element #{i} must be a (key, value) pair, not {type(item).__name__} "
            f"({item!r:.80})"
        ) from None
    size = f"{len(item)} items" if hasattr(item, "__len__") else "another number of items"
    raise ValueError(
        f"update() element #{i} must be a (key, value) pair, not a sequence of {size} "
        f"({item!r:.80})"
    ) from None


def _bad_key(key: object) -> None:
    raise not_a_str_key(key)


class _Values(ValuesView[Any]):
    _mapping: PersistDict

    def __iter__(self) -> Iterator[Any]:
        for _, value in self._mapping._iter_items():
            yield value


class _Items(ItemsView[str, Any]):
    _mapping: PersistDict

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return self._mapping._iter_items()

    def __contains__(self, item: object) -> bool:
        # As dict's view: anything but a (present key, equal value) pair is simply not there.
        # The mixin would unpack any object and look up any key, raising where dict says False.
        if not isinstance(item, tuple) or len(item) != 2 or not isinstance(item[0], str):
            return False
        key, value = item
        try:
            stored = self._mapping[key]
        except KeyError:
            return False
        return stored is value or bool(stored == value)


class PersistDict(MutableMapping[str, Any]):
    """A dict whose contents live in a backend. Usually made by
    [`persistdict.open`][persistdict.open].

    Args:
        backend: any object with the [`Backend`][persistdict.Backend] methods.
        serializer: encodes values for per-key backends; JSON by default. Snapshot backends
            encode whole files themselves and refuse one.
        lock: share the dict between threads safely (a re-entrant lock per dict).
        writeback: cache values read from a per-key backend and write back changed ones on
            ``flush()``/``close()``, like ``shelve``'s writeback, whatever other operations
            run in between.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        serializer: Serializer | str | None = None,
        lock: bool = True,
        writeback: bool | None = None,
    ) -> None:
        core = adapt(backend)
        self._stores_objects = bool(core.stores_objects)
        if self._stores_objects and serializer is not None:
            raise ValueError(
                f"the {core.name} backend encodes its whole file itself and takes no "
                "serializer; a serializer applies to per-key backends such as sqlite"
            )
        self._serializer = serializer_for(serializer)
        self._dumps = self._serializer.dumps
        self._loads = self._serializer.loads
        self._backend: BackendBase | None = core  # reads; None once closed
        # Writes and transactions: the backend itself, or its undo journal where it has no
        # native transactions (reads skip the journal: it only matters to writes).
        self._writer: BackendBase | None = transactional(core)
        self._label = core.describe()
        self._lock = lifecycle.new_lock(lock)
        self._cache: dict[str, tuple[Any, Any]] | None = (
            {} if writeback and not self._stores_objects else None
        )
        # Reads that need no lock of this dict: the backend serializes them itself (and waits
        # for another thread's transaction), and there is no writeback cache to guard.
        self._free_reads = (
            core.thread_safe_reads and self._cache is None and not self._stores_objects
        )
        self._tx_depth = 0  # nesting of transaction() blocks
        # With writeback, one entry per open transaction: the cache entries its writes replaced
        # (or _MISSING), put back if it rolls back, so objects read before it stay attached.
        self._cache_undo: list[dict[str, Any]] = []
        # Whether writes (or values in the writeback cache) may wait in this process until
        # flush(): then a write holds the dict in _unsaved until the next flush.
        self._may_buffer = not core.read_only and (core.buffers_writes or self._cache is not None)
        self._unheld = self._may_buffer  # a write must take a strong reference
        self._pid = os.getpid()
        lifecycle.register(self)
        self._fast_reads = snapshot_reads.install(self, core)  # hook: last, once set up

    # Access to the backend.

    @property
    def backend(self) -> BackendBase:
        """The storage backend; ``ClosedError`` once closed."""
        backend = self._backend
        if backend is None:
            self._raise_closed()
        return backend

    def _undecodable(self, key: str, exc: Exception) -> CorruptError:
        # A damaged file, or one written with another serializer: say which, change nothing.
        found = (
            f"{self._label}: the stored value of key {key!r} can't be decoded by "
            f"{self._serializer!r} ({type(exc).__name__}: {exc}). It was left untouched"
        )
        return CorruptError(
            f"{found}; open it with the serializer that wrote it (serializer=), or run "
            "d.backend.check() and restore a backup",
            cli_message=f"{found}; pass --serializer with the one that wrote it, or run "
            "`persistdict check` and restore a backup",
        )

    def _raise_closed(self) -> NoReturn:
        raise closed_error(self._label)

    def _encode(self, key: str, value: Any) -> Any:
        try:
            return self._dumps(value)
        except Exception as exc:
            raise _unencodable(key, exc) from exc

    def _live_writer(self) -> BackendBase:
        writer = self._writer
        if writer is None:
            self._raise_closed()
        return writer

    def _hold(self) -> None:
        # Unsaved writes: keep the dict alive until it is flushed, closed or the interpreter
        # exits, so dropping it unclosed does not lose them.
        lifecycle.hold(self)
        self._unheld = False

    def _release(self) -> None:
        lifecycle.release(self)
        self._unheld = self._may_buffer

    def _cache_put(self, key: str, entry: Any) -> None:
        # Change the writeback cache for a write (_MISSING: the key was deleted), remembering
        # what it replaced while a transaction may still roll the write back.
        cache = self._cache
        assert cache is not None
        if self._cache_undo:
            self._cache_undo[-1].setdefault(key, cache.get(key, _MISSING))
        if entry is _MISSING:
            cache.pop(key, None)
        else:
            cache[key] = entry

    def _cache_rollback(self, undo: dict[str, Any]) -> None:
        cache = self._cache
        assert cache is not None
        for key, entry in undo.items():
            if entry is _MISSING:
                cache.pop(key, None)
            else:
                cache[key] = entry

    # The mapping protocol.

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str):
            _bad_key(key)
        if self._free_reads:  # no lock, no cache, values to decode: see __init__
            backend = self._backend
            if backend is None:
                self._raise_closed()
            raw = backend.get(key)
            try:
                return self._loads(raw)
            except Exception as exc:
                raise self._undecodable(key, exc) from exc
        cache = self._cache
        with self._lock:
            backend = self._backend
            if backend is None:
                self._raise_closed()
            if cache is not None and key in cache:
                return cache[key][0]
            raw = backend.get(key)
        if self._stores_objects:
            return raw
        try:
            value = self._loads(raw)
        except Exception as exc:
            raise self._undecodable(key, exc) from exc
        if cache is not None:
            with self._lock:
                if self._unheld:
                    self._hold()  # a cached value may be changed in place and need saving
                return cache.setdefault(key, (value, raw))[0]
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            _bad_key(key)
        if self._stores_objects:
            raw = value
        else:  # self._encode() inlined: a call costs ~3% of a batched SQLite write
            try:
                raw = self._dumps(value)
            except Exception as exc:
                raise _unencodable(key, exc) from exc
        with self._lock:
            writer = self._writer
            if writer is None:
                self._raise_closed()
            writer.set(key, raw)
            if self._unheld:
                self._hold()
            if self._cache is not None:
                self._cache_put(key, (value, raw))

    def __delitem__(self, key: str) -> None:
        if not isinstance(key, str):
            _bad_key(key)
        with self._lock:
            self._live_writer().delete(key)
            if self._unheld:
                self._hold()
            if self._cache is not None:
                self._cache_put(key, _MISSING)

    def __contains__(self, key: object) -> bool:
        # The mixin would fetch and decode the value just to answer yes or no.
        if not isinstance(key, str):
            return False
        if self._free_reads:
            backend = self._backend
            if backend is None:
                self._raise_closed()
            return backend.contains(key)
        with self._lock:
            backend = self._backend
            if backend is None:
                self._raise_closed()
            if self._cache is not None and key in self._cache:
                return True
            return backend.contains(key)

    def __len__(self) -> int:
        if self._free_reads:
            return self.backend.count()
        with self._lock:
            return self.backend.count()

    def _locked_chunks(self, it: Iterator[Any]) -> Iterator[Any]:
        # Take the lock once per chunk, not per item: another thread may use the dict between
        # chunks, and the backend streams underneath. chain() hands out each chunk's items in
        # C, which keeps iteration within a few percent of the backend's own speed.
        return itertools.chain.from_iterable(self._chunks(it))

    def _chunks(self, it: Iterator[Any]) -> Iterator[list[Any]]:
        while True:
            with self._lock:  # read each time: a forked child may get a new one
                chunk = list(itertools.islice(it, _CHUNK))
            if not chunk:
                return
            yield chunk

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            it = self.backend.iter_keys()
        return it if self._free_reads else self._locked_chunks(it)

    def _iter_items(self) -> Iterator[tuple[str, Any]]:
        with self._lock:
            it = self.backend.iter_items()
        if self._stores_objects:
            yield from self._locked_chunks(it)
            return
        loads, cache = self._loads, self._cache
        source = it if self._free_reads else self._locked_chunks(it)
        if cache is None:  # the loop below without its three cache tests per item
            for key, raw in source:
                try:
                    value = loads(raw)
                except Exception as exc:
                    raise self._undecodable(key, exc) from exc
                yield key, value
            return
        for key, raw in source:
            # One lookup, not `in` then `[]`: another thread may drop the key in between.
            hit = cache.get(key)
            if hit is not None:
                yield key, hit[0]
                continue
            try:
                value = loads(raw)
            except Exception as exc:
                raise self._undecodable(key, exc) from exc
            # Like d[k], so a value reached through items()/values() is written back too.
            if self._unheld:
                self._hold()
            value = cache.setdefault(key, (value, raw))[0]
            yield key, value

    def keys(self) -> KeysView[str]:
        return KeysView(self)

    def values(self) -> ValuesView[Any]:
        return _Values(self)

    def items(self) -> ItemsView[str, Any]:
        return _Items(self)

    def get(self, key: object, default: Any = None) -> Any:
        if not isinstance(key, str):
            return default  # asking, like `in`: a key that can't be stored is not there
        try:
            return self[key]
        except KeyError:
            return default

    # Read-modify-write operations are atomic: across processes, in a storage transaction
    # (which takes the write lock up front) where several processes may write one store;
    # under the dict's lock where one writer owns the storage (snapshot files, dbm, memory),
    # since a transaction there would copy, and save, the whole file on every call.

    def _atomic(self) -> contextlib.AbstractContextManager[Any]:
        if self.backend.shares_writers:
            return self._transaction(write_back=False)
        return self._lock

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        if not isinstance(key, str):
            _bad_key(key)
        with self._atomic():
            try:
                value = self[key]
            except KeyError:
                if default is _MISSING:
                    raise
                return default
            del self[key]
            return value

    def popitem(self) -> tuple[str, Any]:
        with self._atomic():
            try:
                key = next(iter(self.backend.iter_keys()))
            except StopIteration:
                raise KeyError("popitem(): dictionary is empty") from None
            value = self[key]
            del self[key]
            return key, value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if not isinstance(key, str):
            _bad_key(key)
        try:  # a present key needs no write lock, so a read-only dict answers too
            return self[key]
        except KeyError:
            pass
        with self._atomic():
            try:
                return self[key]
            except KeyError:
                self[key] = default
                return default

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """Store many items as one batch: all of them or, on any error, none where the
        backend has transactions. Every value is encoded before anything is written."""
        pairs: list[tuple[str, Any]] = []
        if type(other) is dict and not kwargs and set(map(type, other)) <= {str}:
            # The usual argument, a dict with str keys, is read in place: copying it and
            # checking keys one by one cost a sixth of update() at 100k keys (the copy's
            # tuples wake the garbage collector).
            pairs = other.items()  # type: ignore[assignment]  # only iterated
        else:
            if isinstance(other, Mapping):
                pairs.extend(other.items())
            elif hasattr(other, "keys"):
                pairs.extend((k, other[k]) for k in other.keys())  # noqa: SIM118 - keys-only
            else:
                for i, item in enumerate(other):
                    try:
                        key, value = item
                    except (TypeError, ValueError) as exc:
                        _not_a_pair(i, item, exc)
                    pairs.append((key, value))
            pairs.extend(kwargs.items())
            for key, _ in pairs:
                if not isinstance(key, str):
                    _bad_key(key)
        if self._stores_objects:
            encoded = pairs
        else:
            dumps = self._dumps
            try:
                encoded = [(k, dumps(v)) for k, v in pairs]
            except Exception:
                # Again one by one, to name the key whose value failed (the common path skips
                # a call per item, ~5% of update()).
                encoded = [(k, self._encode(k, v)) for k, v in pairs]
        if not encoded:
            with self._lock:
                self.backend.check_writable()
            return
        with self._lock:
            writer = self._live_writer()
            writer.check_writable()
            writer.set_many(encoded)
            if self._unheld:
                self._hold()
            if self._cache is not None:
                for (key, value), (_, raw) in zip(pairs, encoded, strict=True):
                    self._cache_put(key, (value, raw))

    def clear(self) -> None:
        with self._lock:
            writer = self._live_writer()
            writer.check_writable()
            writer.clear()
            if self._unheld:
                self._hold()
            if self._cache is not None:
                for key in list(self._cache):
                    self._cache_put(key, _MISSING)

    def __or__(self, other: Any) -> dict[str, Any]:
        if not isinstance(other, Mapping):
            return NotImplemented
        merged = dict(self.items())
        merged.update(other)
        return merged

    def __ror__(self, other: Any) -> dict[str, Any]:
        if not isinstance(other, Mapping):
            return NotImplemented
        merged = dict(other)
        merged.update(self.items())
        return merged

    def __ior__(self, other: Any) -> PersistDict:
        self.update(other)
        return self

    # Transactions.

    def transaction(self) -> contextlib.AbstractContextManager[PersistDict]:
        """Group writes: on a normal exit all of them persist, on an exception none do.

        Other threads using this dict wait until the block ends. On sqlite, lmdb, redis and
        postgres the block is a storage transaction, so a read-modify-write inside it is
        atomic across processes too. Blocks nest; an inner one rolls back alone.

        With ``writeback=True`` the outermost block also writes back, as part of it, the
        cached values that changed. A rolled-back block puts back the cached objects its
        writes replaced, so objects read before it stay attached; changes made inside it to
        such objects in place are not undone (they were never stored) and are written back
        later like any other.
        """
        block = self._transaction(write_back=True)
        return snapshot_reads.paused(self, self._fast_reads, block)  # hook: locked reads

    @contextmanager
    def _transaction(self, *, write_back: bool) -> Iterator[PersistDict]:
        # write_back=False for the internal blocks of pop/popitem/setdefault: writing back the
        # whole cache there would re-encode every cached value on every call.
        with self._lock:
            writer = self._live_writer()
            outermost = not self._tx_depth
            cache = self._cache
            write_back = write_back and outermost and cache is not None
            saved: list[tuple[str, Any, Any]] = []
            if cache is not None:
                self._cache_undo.append({})
            ended = False  # the block ran to its end: what fails after that is the commit
            self._tx_depth += 1
            try:
                with writer.transaction():
                    yield self
                    if write_back:
                        saved = self._write_changed(writer)
                    ended = True
                if outermost and self._stores_objects:
                    self._release()  # the snapshot file was saved as the block ended
            except BaseException:
                if cache is not None:
                    undo = self._cache_undo.pop()
                    if not (ended and writer.failed_commit_keeps_writes):
                        self._cache_rollback(undo)  # else the writes stay, as in the storage
                raise
            finally:
                self._tx_depth -= 1
            if cache is not None:
                # Committed: what the block replaced stays replaced, for an outer block too.
                undo = self._cache_undo.pop()
                if self._cache_undo:
                    for key, entry in undo.items():
                        self._cache_undo[-1].setdefault(key, entry)
                for key, value, raw in saved:
                    entry = cache.get(key)
                    if entry is not None and entry[0] is value:
                        cache[key] = (value, raw)  # stored now: unchanged from here on

    # Lifecycle.

    def _write_changed(self, backend: BackendBase) -> list[tuple[str, Any, Any]]:
        """Store each cached value whose encoding changed since it was read or stored;
        return ``(key, value, new encoding)`` for each, the cache itself untouched."""
        cache = self._cache
        if not cache or backend.read_only:
            return []
        changed = []
        for key, (value, raw) in cache.items():
            new = self._encode(key, value)
            if new != raw:
                changed.append((key, value, new))
        if changed:
            backend.set_many([(key, new) for key, _, new in changed])
        return changed

    def _write_back(self, backend: BackendBase) -> None:
        # flush() and close(): store what changed, then forget the cache, as shelve's sync()
        # does, so it can't grow without bound over a long-lived dict's life.
        self._write_changed(backend)
        if self._cache:
            self._cache.clear()

    def flush(self, force: bool = False) -> None:
        """Write pending changes and make them durable.

        Snapshot files are replaced atomically and only when their contents changed; if the
        write fails (disk full), the old file and the in-memory data are both intact, so a
        retry loses nothing. If another program changed the file since this dict loaded or
        saved it, nothing is written and ``persistdict.ConflictError`` is raised:
        ``refresh`` takes that version, ``force=True`` writes over it. Per-key backends
        commit pending batches (``commit_every``) and, with ``writeback=True``, write back
        cached values that changed; ``force`` changes nothing for them.
        """
        with self._lock:
            backend = self.backend
            if self._cache is not None:
                self._write_back(self._live_writer())
            if force and isinstance(backend, SnapshotBackend):
                backend.flush(force=True)
            else:
                backend.flush()
            self._release()

    sync = flush

    def close(self) -> None:
        """Flush and release the storage. A second call does nothing.

        If the final flush fails the dict stays open, so the data can still be saved.
        """
        with self._lock:
            backend = self._backend
            if backend is None:
                return
            if self._cache is not None and backend.persistent:
                self._write_back(self._live_writer())
            backend.close()
            snapshot_reads.on_close(self._fast_reads, self)  # hook: locked reads from here
            self._backend = self._writer = None
            self._release()
            lifecycle.unregister(self)

    def __del__(self) -> None:
        # As an unclosed file does: warn, then close, which saves what is pending and releases
        # file descriptors and locks. Not in a forked child, which doesn't own the storage.
        if getattr(self, "_backend", None) is None or os.getpid() != self._pid:
            return
        try:
            warnings.warn(
                f"unclosed {self!r}: close it, or open it in a with block",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )
        finally:  # closed even where warnings are errors (-W error), as a file is
            try:
                self.close()
            except Exception as exc:
                print(
                    f"persistdict: could not save {self!r} when collected: {exc}", file=sys.stderr
                )

    @property
    def closed(self) -> bool:
        return self._backend is None

    def __enter__(self) -> PersistDict:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Called by lifecycle: at interpreter exit and around os.fork().

    def _close_at_exit(self) -> None:
        self._pid = -1  # saved here or never: not again by __del__ as the interpreter shuts down
        # A daemon thread may still hold the dict (it runs on during atexit): wait for it as
        # long as for another process's lock, not forever, or the interpreter never exits.
        backend = self._backend
        wait = DEFAULT_TIMEOUT if backend is None else backend.timeout
        if not self._lock.acquire(timeout=wait):
            raise TimeoutError(f"another thread kept using it for {wait:g}s")
        try:
            self.close()
        finally:
            self._lock.release()

    def _prepare_fork(self) -> None:
        # Let the backend settle before os.fork() (SQLite commits an idle commit_every batch),
        # unless another thread is using the dict: the fork must not wait for it.
        backend = self._backend
        if backend is None or not self._lock.acquire(blocking=False):
            return
        try:
            backend.prepare_fork()
        finally:
            self._lock.release()

    def _after_fork_in_child(self) -> None:
        # A lock another parent thread held at fork() would stay held forever in the child,
        # where that thread does not exist, and hang its first use of the dict: replace it. A
        # lock the forking thread holds is kept; that thread releases it as its block unwinds.
        if lifecycle.held_elsewhere(self._lock):
            self._lock = lifecycle.new_lock(True)
            self._tx_depth = 0
            self._cache_undo = []
            if self._writer is not None:
                self._writer.forget_transactions()

    def __reduce__(self) -> Any:
        raise TypeError(
            f"{self!r} can't be pickled: it is tied to open storage. Pickle dict(d) instead, "
            "or pass the path and open it again"
        )

    def __repr__(self) -> str:
        state = " (closed)" if self._backend is None else ""
        return f"<PersistDict {self._label}{state}>"

    def refresh(self) -> None:
        """Reload a snapshot file (json, csv, pickle) from disk.

        Opened read-only, the dict then sees what a writer flushed since. A writer takes the
        version another program saved (after ``persistdict.ConflictError``), dropping
        its own unsaved changes. Not allowed inside ``transaction()``.
        """
        with self._lock:
            self.backend.refresh()
