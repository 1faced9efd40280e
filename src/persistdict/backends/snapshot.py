"""Shared base of the whole-file formats (json, csv, pickle).

A snapshot backend holds the live objects in a ``dict`` and writes the whole file on
``flush()``, so ``d["a"]["b"] = 1`` persists exactly as it would in a plain dict. The writer
holds an inter-process lock for as long as the dict is open; readers (``flag="r"``) take no
lock and see whole versions only, because every write replaces the file atomically.
"""

from __future__ import annotations

import collections
import copy
import datetime as _dt
import decimal as _decimal
import errno
import fractions as _fractions
import hashlib
import os
import time
import uuid as _uuid
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from persistdict.backends.base import BackendBase, fork_generation
from persistdict.errors import CorruptError
from persistdict.fileio import atomic_write, previous_path, remove_stale_temps, restore_previous
from persistdict.locking import DEFAULT_TIMEOUT, FileLock, forked_writer_error

__all__ = ["SnapshotBackend"]


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
        recover: bool = False,
    ) -> None:
        """Open (or create) the file at ``path`` and load it.

        Args:
            recover: if the file is damaged, restore the previous generation kept beside it
                (``.<name>.persistdict-prev``) and warn saying what was lost; the damaged file
                is kept as ``<name>.corrupt-<time>``. With ``flag="r"`` the previous
                generation is only read, nothing on disk changes.
        """
        self.path = os.fspath(path)
        self.flag = flag
        self.read_only = flag == "r"
        self._mode = mode
        self._data: dict[str, Any] = {}
        self._digest = b""
        # Whether _digest is of this backend's own encoding (after a save) or of the bytes a
        # load found, whose layout may differ (a file edited by hand or another program).
        self._digest_is_ours = False
        self._dirty = False  # a change went through set/delete/clear since the last save
        self._lock: FileLock | None = None
        self._fork_generation = fork_generation()
        self._saved: list[_Saved] = []
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
                # Look again with the lock held: the writer we waited for may have created the
                # file meanwhile, and an empty file written over it would lose all it saved.
                exists = os.path.exists(self.path)
                remove_stale_temps(self.path)
            if flag == "n" or not exists:
                # flag="n" may replace a damaged file: don't make it the previous generation.
                self._write(self.encode({}), keep_previous=False)
            else:
                self._load(recover=recover)
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

    def _fault(self, raw: bytes, exc: Exception) -> str:
        return f"{self.path!r} ({len(raw)} bytes) is not a valid {self.format_name} file: {exc}"

    def _load(self, recover: bool = False) -> None:
        with open(self.path, "rb") as f:
            raw = f.read()
        try:
            data = self.decode(raw)
        except Exception as exc:  # decode reports every fault as ValueError; be safe anyway
            if not recover:
                raise CorruptError(f"{self._fault(raw, exc)}. {self._way_back()}") from exc
            data, raw = self._recover(self._fault(raw, exc), exc)
        self._data = data
        self._digest = hashlib.blake2b(raw).digest()
        self._digest_is_ours = False
        self._dirty = False

    def _way_back(self) -> str:
        try:
            saved = _utc(os.stat(previous_path(self.path)).st_mtime)
        except OSError:
            return "It was left untouched; repair it, restore a backup, or open with flag='n'"
        return (
            f"It was left untouched. The previous generation, saved {saved}, is kept beside it: "
            "open with recover=True to restore it (changes saved after it are lost)"
        )

    def _recover(self, fault: str, exc: Exception) -> tuple[dict[str, Any], bytes]:
        prev = previous_path(self.path)
        try:
            with open(prev, "rb") as f:
                raw = f.read()
            saved = _utc(os.stat(prev).st_mtime)
            broken = _utc(os.stat(self.path).st_mtime)
        except FileNotFoundError:
            raise CorruptError(
                f"{fault}. recover=True found no previous generation ({str(prev)!r}) to restore;"
                " repair the file, restore a backup, or open with flag='n'"
            ) from exc
        try:
            data = self.decode(raw)
        except Exception as prev_exc:
            raise CorruptError(
                f"{fault}. Its previous generation {str(prev)!r} is damaged too ({prev_exc}); "
                "both were left untouched"
            ) from exc
        if self.read_only:
            done = "read the previous generation instead; no file was changed"
        else:
            kept = restore_previous(self.path)
            done = f"restored the previous generation; the damaged file is kept as {str(kept)!r}"
        warnings.warn(
            f"{fault}. recover=True {done}. It holds {len(data)} keys as saved {saved}; "
            f"whatever was saved after that, up to the damaged version of {broken}, is lost",
            UserWarning,
            stacklevel=5,
        )
        return data, raw

    def _write(self, raw: bytes, keep_previous: bool = True) -> None:
        atomic_write(self.path, raw, self._mode, keep_previous=keep_previous)
        self._digest = hashlib.blake2b(raw).digest()
        self._digest_is_ours = True
        self._dirty = False

    def check(self) -> list[str]:
        """Parse the file on disk as ``open`` would; list the faults, ``[]`` if it is whole.

        A writer's unflushed changes are not on disk yet and are not checked.
        """
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except OSError as exc:
            return [f"can't read {self.path!r}: {exc}"]
        try:
            self.decode(raw)
        except Exception as exc:
            return [self._fault(raw, exc)]
        return []

    def refresh(self) -> None:
        """Reload the file, for a reader that wants to see a writer's later flushes."""
        if not self.read_only:
            raise ValueError("refresh() is for dicts opened with flag='r'; a writer is current")
        self._load()

    def flush(self) -> None:
        if self.read_only:
            return
        self._check_process()
        try:
            raw = self.encode(self._data)
        except (TypeError, ValueError) as exc:
            # A nested object changed into something unstorable without passing set(); name
            # the key. Nothing was written, the in-memory data is kept.
            for key, value in self._data.items():
                self.check_value(key, value)
            raise type(exc)(f"can't save {self.path!r}: {exc}") from exc
        # Nested objects can change without passing through set(), so compare the encoded
        # bytes rather than trusting the dirty flag alone; unchanged data writes nothing.
        digest = hashlib.blake2b(raw).digest()
        if digest == self._digest:
            self._dirty = False
            return
        if not self._dirty and not self._digest_is_ours and self._disk_holds_data():
            # Same data, another layout (a hand-edited file): leave the file as it is. Done
            # here, once, rather than encoding at every open, which would slow opening.
            self._digest, self._digest_is_ours = digest, True
            return
        self._write(raw)

    def _disk_holds_data(self) -> bool:
        try:
            with open(self.path, "rb") as f:
                return bool(self.decode(f.read()) == self._data)
        except Exception:  # unreadable or unparsable now: not the same data, so save
            return False

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
            raise forked_writer_error(self.path)

    def check_writable(self) -> None:
        # A change in a forked child could never be saved: refuse it now rather than drop it.
        super().check_writable()
        self._check_process()

    # The mapping operations.

    def get(self, key: str) -> Any:
        return self._data[key]

    def set(self, key: str, value: Any) -> None:
        self.check_writable()
        self.check_value(key, value)
        self._data[key] = value
        self._dirty = True

    def set_many(self, items: Iterable[tuple[str, Any]]) -> None:
        self.check_writable()
        batch = list(items)
        for key, value in batch:  # check all before changing anything: all or nothing
            self.check_value(key, value)
        self._data.update(batch)
        self._dirty = True

    def delete(self, key: str) -> None:
        self.check_writable()
        del self._data[key]
        self._dirty = True

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
        self._dirty = True

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Undo the block's changes if it raises, or if the save at its end fails.

        What is undone: the dict's keys and every object reachable from it when the block
        began (dicts, lists, sets, bytearrays, deques, and the ``__dict__`` of other objects)
        get back their contents in place, so the objects callers hold stay the dict's own.
        Objects the block added are dropped. Objects of other mutable kinds (``__slots__``
        or C-level state, e.g. ``array.array``; pickle files only) are put back as copies made
        when the block began, so a reference to one of those is detached; one that can't be
        copied is left as it is.
        """
        self.check_writable()
        # Shallow copies of every container's contents (not deep copies): restoring them in
        # place keeps each object's identity, and a deep copy put back instead would cut the
        # caller's references loose (issue 12, item 2).
        saved = _capture(self._data)
        self._saved.append(saved)
        try:
            yield
        except BaseException:
            self._saved.pop()
            _restore(saved)
            raise
        self._saved.pop()
        if not self._saved:
            try:
                self.flush()
            except BaseException:
                # A commit that could not be saved (disk full) undoes the block, as a failed
                # COMMIT does: the caller sees an error and may run the block again.
                _restore(saved)
                raise

    def describe(self) -> str:
        return f"{self.name} {self.path!r}" + (" read-only" if self.read_only else "")


# Types whose values can't change in place: nothing to capture (tuples and frozensets are
# looked into, for mutable objects inside them).
_IMMUTABLE = (
    str,
    bytes,
    int,
    float,
    complex,
    bool,
    type(None),
    range,
    type,
    _dt.date,
    _dt.time,
    _dt.timedelta,
    _decimal.Decimal,
    _fractions.Fraction,
    _uuid.UUID,
)


# The common leaves, skipped by exact type before any other check: most of a file's values.
_ATOMIC = frozenset({str, int, float, bool, type(None), bytes})


class _Saved:
    """The state of every object reachable from a snapshot's dict, to put back in place."""

    def __init__(self) -> None:
        # id -> (object, its contents when captured); the object is held so its id stays
        # unique while the block runs.
        self.states: dict[int, tuple[Any, Any]] = {}
        # Objects that can't be restored in place: (object, a deep copy to use instead).
        self.copies: dict[int, tuple[Any, Any]] = {}


def _capture(data: dict[str, Any]) -> _Saved:
    saved = _Saved()
    states, copies = saved.states, saved.copies
    atomic = _ATOMIC
    stack: list[Any] = [data]
    push = stack.extend
    while stack:
        obj = stack.pop()
        key = id(obj)
        if key in states:
            continue
        state: Any
        kind = type(obj)
        if kind is dict:  # the usual case first: a JSON object
            state = obj.copy()
            push([v for v in state.values() if type(v) not in atomic])
            push([k for k in state if type(k) is not str])
        elif kind is list:
            state = obj.copy()
            push([v for v in state if type(v) not in atomic])
        elif key in copies or isinstance(obj, _IMMUTABLE):
            continue
        elif isinstance(obj, dict):
            state = dict(obj)
            push([v for v in state.values() if type(v) not in atomic])
            push([k for k in state if type(k) not in atomic])
        elif isinstance(obj, (list, set, bytearray, collections.deque)):
            state = list(obj)
            push([v for v in state if type(v) not in atomic])
        elif isinstance(obj, (tuple, frozenset)):
            push([v for v in obj if type(v) not in atomic])
            continue
        elif isinstance(getattr(obj, "__dict__", None), dict) and not hasattr(
            type(obj), "__slots__"
        ):
            state = dict(obj.__dict__)
            push(state.values())
        else:
            try:
                dup = copy.deepcopy(obj)
            except Exception:  # e.g. a lock slipped in: left as it is, as the save would fail
                dup = obj
            copies[key] = (obj, dup)
            continue
        states[key] = (obj, state)
    return saved


def _restore(saved: _Saved) -> None:
    swap = {key: dup for key, (_, dup) in saved.copies.items()}
    for obj, state in saved.states.values():
        if swap:  # an object restored as a copy takes its place wherever it was held
            if isinstance(state, dict):
                state = {k: swap.get(id(v), v) for k, v in state.items()}
            else:
                state = [swap.get(id(v), v) for v in state]
        if isinstance(obj, dict):
            obj.clear()
            obj.update(state)
        elif isinstance(obj, (list, bytearray)):
            obj[:] = state
        elif isinstance(obj, set):
            obj.clear()
            obj.update(state)
        elif isinstance(obj, collections.deque):
            obj.clear()
            obj.extend(state)
        else:
            obj.__dict__.clear()
            obj.__dict__.update(state)


def _utc(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))
