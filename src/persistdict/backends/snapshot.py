"""Shared base of the whole-file formats (json, csv, pickle).

A snapshot backend holds the live objects in a ``dict`` and writes the whole file on
``flush()``, so ``d["a"]["b"] = 1`` persists exactly as it would in a plain dict. The writer
holds an inter-process lock for as long as the dict is open; readers (``flag="r"``) take no
lock and see whole versions only, because every write replaces the file atomically.

Programs that ignore the lock (an editor, a script using ``json.dump``) can still change the
file under an open writer. Before writing, a flush checks that the file on disk is the version
this dict loaded or saved last, and raises ``ConflictError`` rather than overwrite another
program's change. The check is a ``stat()`` (device, inode, size, modification and change
times), which sees an editor that saves by rename (a new inode) and one that rewrites in place
(size or times); when those times are too recent to tell two writes apart (file systems keep
them to a tick of a few ms, some to 2 s), the bytes are compared as well.
"""

from __future__ import annotations

import collections
import copy
import datetime as _dt
import decimal as _decimal
import fractions as _fractions
import hashlib
import os
import shlex
import time
import uuid as _uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from persistdict.backends.base import BackendBase, check_flag, fork_generation
from persistdict.errors import (
    ConflictError,
    CorruptError,
    no_such,
    not_a_str_key,
)
from persistdict.fileio import (
    atomic_write,
    check_side_file,
    previous_path,
    read_previous,
    refuse_read_only,
    remove_stale_temps,
    resolve_data_path,
    restore_previous,
)
from persistdict.locking import DEFAULT_TIMEOUT, FileLock, check_timeout, forked_writer_error

__all__ = ["LiveData", "SnapshotBackend"]

# How close to "now" a file's modification time must be, when this dict reads or writes it,
# for another write to be able to land in the same timestamp tick, unseen by stat(): Linux
# stamps files from a clock that ticks every 1-10 ms; a time in whole seconds is a file
# system that keeps 1 or 2 s (FAT). Inside that window the next write compares the bytes.
_RACY_NS = 100_000_000
_RACY_COARSE_NS = 2_000_000_000


class SnapshotBackend(BackendBase):
    """A dict in memory, saved whole to one file.

    Subclasses define ``encode``, ``decode`` and ``check_value``.
    """

    stores_objects: ClassVar[bool] = True
    native_transactions: ClassVar[bool] = True
    format_name: ClassVar[str] = "snapshot"
    path: str
    durability: ClassVar[str] = (
        "the whole file is replaced atomically and fsynced on every flush and close"
    )
    # An existing file is rewritten whole by a new one renamed over it, as flush() does.
    rewrite = "new_file"

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
        self.flag = check_flag(flag)
        self.read_only = flag == "r"
        self._mode = mode
        self._data: dict[str, Any] = LiveData()
        self._data_watchers: list[Callable[[dict[str, Any]], None]] = []
        self._data_shared = False  # handed to a reader by share_data(): copy before a change
        self._digest = b""
        # Whether _digest is of this backend's own encoding (after a save) or of the bytes a
        # load found, whose layout may differ (a file edited by hand or another program).
        self._digest_is_ours = False
        self._dirty = False  # a change went through set/delete/clear since the last save
        # The version on disk that this dict loaded or saved last: its stat and its bytes'
        # digest, to tell another program's change from ours before writing over it.
        self._disk: tuple[int, int, int, int, int] | None = None
        self._disk_digest = b""
        self._disk_racy = False
        self._lock: FileLock | None = None
        self._fork_generation = fork_generation()
        # Also how long the dict waits at exit for a thread still using it.
        self.timeout = check_timeout(timeout)
        self._saved: list[_Saved] = []
        # A symlink another user planted in a shared folder is refused before anything is
        # read or written, readers included (it could point at a file of theirs or yours).
        resolve_data_path(self.path, create=flag in ("c", "n"))
        exists = os.path.exists(self.path)
        if not exists and flag in ("r", "w"):
            raise no_such("file", self.path)
        if not self.read_only:
            refuse_read_only(self.path)
        if not self.read_only:
            self._lock = FileLock(self.path, timeout)
            self._lock.acquire()
        try:
            if not self.read_only:
                # Look again with the lock held: the writer we waited for may have created the
                # file meanwhile, and an empty file written over it would lose all it saved.
                exists = os.path.exists(self.path)
                remove_stale_temps(self.path)
                check_side_file(previous_path(self.path))
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
        size = _count(len(raw), "byte")
        return f"{self.path!r} ({size}) is not a valid {self.format_name} file: {exc}"

    def _load(self, recover: bool = False) -> None:
        with open(resolve_data_path(self.path), "rb") as f:
            raw = f.read()
            seen: os.stat_result | None = os.fstat(f.fileno())
        try:
            data = self.decode(raw)
        except Exception as exc:  # decode reports every fault as ValueError; be safe anyway
            if not recover:
                raise self._corrupt(self._fault(raw, exc)) from exc
            data, raw = self._recover(self._fault(raw, exc), exc)
            # A writer put the previous generation in place: that is the version on disk.
            seen = None if self.read_only else os.stat(self.path)
        self._replace_data(LiveData(data))
        self._digest = hashlib.blake2b(raw).digest()
        self._digest_is_ours = False
        self._dirty = False
        self._remember(seen, self._digest)

    def _remember(self, seen: os.stat_result | None, digest: bytes) -> None:
        if seen is None:
            self._disk = None
            return
        self._disk = _identity(seen)
        self._disk_digest = digest
        # ctime too: a script can set the modification time back, not the change time.
        changed = max(seen.st_mtime_ns, seen.st_ctime_ns)
        window = _RACY_COARSE_NS if changed % 1_000_000_000 == 0 else _RACY_NS
        self._disk_racy = time.time_ns() - changed < window

    def _check_disk(self, writing: bytes) -> None:
        """Raise ``ConflictError`` if the file is no longer the version this dict knows, and
        not the one it is about to write either (a retry after a failed flush)."""
        if self._disk is None:
            return
        try:
            seen = os.stat(self.path)
        except FileNotFoundError:
            return  # deleted: no other version to lose; the save puts the data back
        if _identity(seen) == self._disk and not self._disk_racy:
            return
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
                seen = os.fstat(f.fileno())
        except FileNotFoundError:
            return
        digest = hashlib.blake2b(raw).digest()
        if digest in (self._disk_digest, writing):  # the same bytes, touched or copied over
            self._remember(seen, digest)
            return
        changed = (
            f"{self.path!r} was changed by another program since this dict loaded or saved "
            f"it ({_count(self._disk[2], 'byte')} then, {len(raw)} now, modified "
            f"{_utc(seen.st_mtime_ns / 1e9)}); nothing was written"
        )
        raise ConflictError(
            f"{changed}. Call d.refresh() to load the version on disk (this dict's unsaved "
            "changes are dropped), or d.flush(force=True) to write this dict's data over it",
            cli_message=f"{changed}. Run the command again to work on the new version",
        )

    def _corrupt(self, fault: str) -> CorruptError:
        """The error for a damaged file, with the ways back that lose nothing unasked."""
        check = f"`persistdict check {shlex.quote(self.path)}`"
        try:
            saved = _utc(os.lstat(previous_path(self.path)).st_mtime)
        except OSError:
            return CorruptError(
                f"{fault}. It was left untouched: repair it ({check} says when it parses) or "
                "restore a backup"
            )
        kept = f"It was left untouched. Its previous generation, saved {saved}, is kept beside it"
        lost = "what was saved after it is lost"
        return CorruptError(
            f"{fault}. {kept}: open with recover=True to restore it ({lost}), or restore a "
            f"backup, or repair the file ({check} says when it parses)",
            cli_message=f"{fault}. {kept}: rerun with --recover to use it (a command that "
            f"writes restores it; {lost}), or restore a backup, or repair the file "
            f"({check} says when it parses)",
        )

    def _recover(self, fault: str, exc: Exception) -> tuple[dict[str, Any], bytes]:
        prev = previous_path(self.path)
        try:
            raw, prev_st = read_previous(self.path)
            saved = _utc(prev_st.st_mtime)
            broken = _utc(os.stat(self.path).st_mtime)
        except FileNotFoundError:
            found = f"found no previous generation ({str(prev)!r}) to restore"
            way = "it was left untouched: repair it or restore a backup"
            raise CorruptError(
                f"{fault}. recover=True {found}; {way}",
                cli_message=f"{fault}. --recover {found}; {way}",
            ) from exc
        try:
            data = self.decode(raw)
        except Exception as prev_exc:
            raise CorruptError(
                f"{fault}. Its previous generation {str(prev)!r} is damaged too ({prev_exc}); "
                "both were left untouched: restore a backup"
            ) from exc
        if self.read_only:
            done = "read the previous generation instead; no file was changed"
        else:
            kept = restore_previous(self.path)
            done = f"restored the previous generation; the damaged file is kept as {str(kept)!r}"
        warnings.warn(
            f"{fault}. recover=True {done}. It holds {_count(len(data), 'key')} as saved {saved}; "
            f"whatever was saved after that, up to the damaged version of {broken}, is lost",
            UserWarning,
            stacklevel=5,
        )
        return data, raw

    def _write(self, raw: bytes, keep_previous: bool = True, digest: bytes | None = None) -> None:
        """Save ``raw`` (whose digest flush() has computed already, if given)."""
        atomic_write(self.path, raw, self._mode, keep_previous=keep_previous)
        self._digest = hashlib.blake2b(raw).digest() if digest is None else digest
        self._digest_is_ours = True
        self._dirty = False
        try:
            self._remember(os.stat(self.path), self._digest)
        except OSError:  # gone already: the next write has nothing to compare with
            self._disk = None

    def check(self) -> list[str]:
        """Parse the file on disk as ``open`` would; list the faults, ``[]`` if it is whole.

        A writer's unflushed changes are not on disk yet and are not checked.
        """
        try:
            with open(resolve_data_path(self.path), "rb") as f:
                raw = f.read()
        except OSError as exc:
            return [f"can't read {self.path!r}: {exc}"]
        try:
            self.decode(raw)
        except Exception as exc:
            return [self._fault(raw, exc)]
        return []

    def refresh(self) -> None:
        """Reload the file: a reader sees a writer's later flushes; a writer takes the version
        another program saved (``ConflictError``), dropping its own unsaved changes."""
        if self._saved:
            raise ValueError(
                f"can't refresh {self.path!r} inside transaction(): leave the block first"
            )
        self._load()

    def flush(self, force: bool = False) -> None:
        """Save the data if it changed.

        Args:
            force: write even if another program changed the file since this dict loaded
                or saved it (otherwise ``ConflictError``); that change is lost.
        """
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
        if not force:
            self._check_disk(digest)
        self._write(raw, digest=digest)

    def _disk_holds_data(self) -> bool:
        try:
            with open(resolve_data_path(self.path), "rb") as f:
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

    # The live dict, for readers that bypass the methods below (persistdict.snapshot_reads).

    def watch_data(self, watcher: Callable[[dict[str, Any]], None]) -> None:
        """Call ``watcher(data)`` with the live dict now and whenever another replaces it (a
        reload, a copy on write: see ``share_data``).

        Each change to that dict is one C-level call (a store, a deletion, ``update``,
        ``clear``), made with the PersistDict's lock held, as all writes are. A missing key
        raises ``KeyError``, a key that is not a ``str`` ``TypeError``, as in PersistDict.
        """
        self._data_watchers.append(watcher)
        watcher(self._data)

    def unwatch_data(self, watcher: Callable[[dict[str, Any]], None]) -> None:
        """Stop calling ``watcher`` (see ``watch_data``)."""
        self._data_watchers.remove(watcher)

    def share_data(self) -> dict[str, Any]:
        """The live dict, to iterate in place rather than copy: it no longer changes, since
        the next change copies it first and goes to the copy, which replaces it (the watchers
        are told). Call it with the PersistDict's lock held, as writes are."""
        if self._saved:  # inside transaction(), whose rollback restores this dict in place
            return dict(self._data)
        self._data_shared = True
        return self._data

    def _replace_data(self, data: dict[str, Any]) -> None:
        self._data = data
        self._data_shared = False
        for watcher in self._data_watchers:
            watcher(data)

    def _unshared(self) -> dict[str, Any]:
        """The live dict, copied first if ``share_data`` handed it out since it last changed."""
        if self._data_shared:
            self._replace_data(LiveData(self._data))
        return self._data

    # The mapping operations.

    def get(self, key: str) -> Any:
        return self._data[key]

    def set(self, key: str, value: Any) -> None:
        self.check_writable()
        self.check_value(key, value)
        self._unshared()[key] = value
        self._dirty = True

    def set_many(self, items: Iterable[tuple[str, Any]]) -> None:
        self.check_writable()
        batch = list(items)
        for key, value in batch:  # check all before changing anything: all or nothing
            self.check_value(key, value)
        self._unshared().update(batch)
        self._dirty = True

    def delete(self, key: str) -> None:
        self.check_writable()
        if key not in self._data:
            raise KeyError(key)
        del self._unshared()[key]
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
        if self._data_shared:
            self._replace_data(LiveData())
        else:
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
        saved = _capture(self._unshared())  # restored in place if the block fails
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


class LiveData(dict[str, Any]):
    """A snapshot's data: a ``dict`` whose failed lookup says why, as ``PersistDict`` does
    (``KeyError`` for a missing key, ``TypeError`` for one that is not a ``str``), so that
    ``data.__getitem__`` can stand in for ``PersistDict.__getitem__``."""

    __slots__ = ()

    def __missing__(self, key: Any) -> Any:
        if isinstance(key, str):
            raise KeyError(key)
        raise not_a_str_key(key)


def _identity(seen: os.stat_result) -> tuple[int, int, int, int, int]:
    return (seen.st_dev, seen.st_ino, seen.st_size, seen.st_mtime_ns, seen.st_ctime_ns)


def _count(n: int, noun: str) -> str:
    return f"1 {noun}" if n == 1 else f"{n} {noun}s"


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
