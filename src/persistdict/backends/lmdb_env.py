"""The LMDB backend: one named database per table in an LMDB environment (a directory).

Targets: ``data.lmdb`` (a directory holding ``data.mdb`` and ``lock.mdb``) or
``lmdb:///relative.lmdb``, ``lmdb:////absolute.lmdb``, with options such as ``?map_size=...``
in the query string or as keyword arguments.

Keys are stored as UTF-8, except the empty key, which LMDB refuses: it is stored as the single
byte ``0xff``, which no UTF-8 text can be. Keys are limited to 511 UTF-8 bytes. Values are the
serializer's output (``str`` as UTF-8).

Durability: every write is a committed LMDB write transaction before the call returns; with
``sync=True`` (default) the commit is fsynced and survives power loss, ``sync=False`` survives
a killed process only. ``update()`` is one transaction.

Concurrency: any number of processes read and write one environment; LMDB lets one write
transaction run at a time and readers never wait. ``transaction()`` is a write transaction
(nested blocks are LMDB child transactions), so a read-modify-write in it is exact across
processes. Within one process the environment is opened once and shared by every dict on it,
as LMDB requires, and operations on it are serialized by one lock, which ``transaction()``
holds for its whole block. Reads take that lock and no other (the backend declares
``thread_safe_reads``, so ``PersistDict`` skips its own): each runs in a read transaction of
its own, which py-lmdb renews from the one before, so it sees every commit made before it.

The map (the environment's maximum size) grows instead of failing: it is doubled before an
``update()`` or a ``transaction()`` when more than half is used, and when a write finds it
full, the write is run again on the larger map. Inside ``transaction()`` the block's writes
so far are replayed on a fresh write transaction, which is exact because they are replayed
only if no other process committed in between; otherwise [`LockedError`][persistdict.LockedError]
asks to run the block again.

Iteration reads pages of keys in short read transactions, so nothing stays open between
pages (a long read transaction would stop LMDB from reusing pages) and memory stays flat.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import operator
import os
import struct
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

from persistdict.backends.base import (
    BackendBase,
    MissingTableError,
    check_flag,
    check_table_name,
    fork_generation,
    import_driver,
    value_bytes,
)
from persistdict.errors import CorruptError, LockedError, ReadOnlyError, closed_error, no_such
from persistdict.fileio import resolve_data_path
from persistdict.locking import DEFAULT_TIMEOUT, WriterGate, check_timeout
from persistdict.urls import parse_bool, split_scheme, url_options, url_path

__all__ = ["LmdbBackend"]

DEFAULT_MAP_SIZE = 1 << 30  # address space, not disk: the file grows only as pages are written
_PAGE = 1000
_EMPTY_KEY = b"\xff"
_OPTIONS: dict[str, Callable[[str], Any]] = {
    "map_size": int,
    "max_dbs": int,
    "sync": parse_bool,
    "timeout": float,
}
_Op = tuple[Any, ...]  # ("put", k, v), ("del", k), ("many", rows) or ("drop",): see _apply


def _lmdb() -> Any:
    return import_driver("lmdb", "lmdb", "lmdb")


@dataclass
class _Env:
    """One process-wide handle on an environment, shared by every dict opened on it."""

    env: Any
    readonly: bool
    generation: int
    lock: threading.RLock = field(default_factory=threading.RLock)
    users: int = 0
    writer: object | None = None  # the backend whose transaction() holds the write txn
    # Taken around each write transaction, so that a writer waits for another process's
    # transaction only up to its timeout (LMDB's own writer lock waits without a limit).
    gate: WriterGate | None = None


_envs: dict[str, _Env] = {}
_envs_lock = threading.Lock()

# Every open backend, so a forked child can turn off their fast paths at once (below).
_live: weakref.WeakSet[LmdbBackend] = weakref.WeakSet()


# Environments whose lock _settle_before_fork took, released on both sides of the fork.
_held_over_fork: list[_Env] = []
_FORK_WAIT = 0.1  # seconds to wait for another thread's read or write to end before a fork


def _settle_before_fork() -> None:
    """Free the read transaction py-lmdb keeps for reuse (max_spare_txns=1) before a fork.

    That transaction keeps its reader slot in lock.mdb between reads. A forked child closing
    its inherited handle would abort its copy, which frees that slot in the shared lock file
    while the parent still counts on it; the parent's next read would then fail or, once
    another process took the slot, clear that process's snapshot, letting a writer reuse
    pages it is reading. ``set_mapsize`` frees the spare transaction, and may only run with no
    transaction open in this process: so it runs under the environment lock, which every
    transaction of this module holds, and not inside ``transaction()``. The lock is held
    through the fork, so no other thread begins a read in between.
    """
    for shared in list(_envs.values()):
        if shared.generation != fork_generation():
            continue  # inherited and never used here: it has no transaction to free
        if not shared.lock.acquire(timeout=_FORK_WAIT):
            continue  # another thread's long transaction(): see _close_inherited
        _held_over_fork.append(shared)
        if shared.writer is None:  # else this thread forks inside transaction()
            # A fork must not fail for it: a read that finds the slot gone begins anew.
            with contextlib.suppress(_lmdb().Error):
                shared.env.set_mapsize(shared.env.info()["map_size"])


def _release_after_fork() -> None:
    while _held_over_fork:
        _held_over_fork.pop().lock.release()


def _disarm_after_fork() -> None:
    _release_after_fork()
    for backend in list(_live):
        backend._ready = None


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent only on Windows
    os.register_at_fork(
        before=_settle_before_fork,
        after_in_parent=_release_after_fork,
        after_in_child=_disarm_after_fork,
    )


def _close_inherited(path: str, shared: _Env) -> None:
    """Close, in a forked child, the handle inherited from the parent. py-lmdb refuses to open
    an environment twice in a process, so it must go; closing is safe for the parent: LMDB
    clears only reader slots of the closing pid, and the child holds none of its file locks.
    Read transactions the child inherited would free the parent's slots as they are aborted
    here: the parent freed its spare one before forking (_settle_before_fork) unless it forked
    inside transaction() or while another thread held the environment for over _FORK_WAIT.
    """
    if _envs.get(path) is shared:
        del _envs[path]
    shared.env.close()
    if shared.gate is not None:
        shared.gate.close()  # in a child: closes its copy, the parent's lock stays


# The two meta pages at the head of data.mdb (LMDB's MDB_meta after the page header), read
# with the native word size S: magic u32 at S + 8, the page size in the free DB's md_pad at
# S + 8 + 8 + 2S, the last used page at S + 8 + 24 + 12S and the txn id right after it.
_WORD = struct.calcsize("P")
_META = _WORD + 8
_MAGIC = 0xBEEFC0DE
_META_FIELDS = {
    "magic": (_META, "I"),
    "psize": (_META + 8 + 2 * _WORD, "I"),
    "last_pg": (_META + 24 + 12 * _WORD, "N" if _WORD == 8 else "I"),
    "txnid": (_META + 24 + 13 * _WORD, "N" if _WORD == 8 else "I"),
}


def _meta(head: bytes, offset: int) -> dict[str, int] | None:
    """The fields of the meta page at ``offset`` in ``head``, or None if it isn't one."""
    end = offset + _META_FIELDS["txnid"][0] + _WORD
    if len(head) < end:
        return None
    out = {
        name: struct.unpack_from("@" + code, head, offset + at)[0]
        for name, (at, code) in _META_FIELDS.items()
    }
    return out if out["magic"] == _MAGIC and out["psize"] >= 512 else None


def _check_data_file(folder: str, data: str, flag: str) -> None:
    """Refuse a data.mdb that LMDB would map past its end.

    LMDB reads pages through a memory map and trusts the meta page's idea of how many pages
    the file holds; a truncated file (a bad copy, a full disk) then kills the process with
    SIGBUS on the first read, which no ``except`` can catch. So the newest meta page is read
    here with plain reads and the file's size compared with the pages it claims. Meta pages
    are written after the pages they point to, so a concurrent writer can only make the file
    larger than what a meta read first claims.
    """
    try:
        fd = os.open(data, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return
    try:
        head = os.pread(fd, 2 * 65536 + 4096, 0)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if size == 0:
        if flag == "r":
            raise _damaged(folder, "its data.mdb is empty (0 bytes)")
        if _nobody_has_it_open(folder):
            raise _damaged(folder, "its data.mdb is empty (0 bytes) and no process is creating it")
        return  # another process is creating the environment right now
    first = _meta(head, 0)
    if first is None:
        return  # LMDB itself reports a bad header as MDB_INVALID (translated below)
    second = _meta(head, first["psize"])
    metas = [m for m in (first, second) if m is not None]
    newest = max(metas, key=lambda m: m["txnid"])
    needed = (newest["last_pg"] + 1) * newest["psize"]
    if size < needed:
        raise _damaged(
            folder,
            f"its data.mdb is {size} bytes but its last commit uses {needed} "
            "(the file was truncated)",
        )


def _nobody_has_it_open(folder: str) -> bool:
    """True if no process has the environment open: LMDB holds a lock on the first byte of
    lock.mdb (exclusive while creating the environment, shared afterwards) in every process
    that has it open."""
    try:
        fd = os.open(os.path.join(folder, "lock.mdb"), os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False  # can't tell: let LMDB decide
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
    except OSError:
        return False
    finally:
        os.close(fd)  # closing releases the probe's lock (POSIX record locks)
    return True


def _damaged(folder: str, why: str) -> CorruptError:
    return CorruptError(
        f"{folder!r} is a damaged LMDB environment: {why}. It was left untouched; restore "
        "its data.mdb from a backup"
    )


_UNREAD: Any = object()
_first = operator.itemgetter(0)
_second = operator.itemgetter(1)


def _key(key: str) -> bytes:
    return key.encode("utf-8") if key else _EMPTY_KEY


def _unkey(raw: bytes, path: str = "") -> str:
    if raw == _EMPTY_KEY:
        return ""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Every key persistdict writes is UTF-8 (or the empty-key byte): this one is damage
        # or another program's data.
        raise CorruptError(
            f"{path!r} holds a key that is not UTF-8 text ({raw[:40]!r}: {exc}); the file "
            "is damaged or was written by another program. Restore a backup"
        ) from None


class LmdbBackend(BackendBase):
    """A dict stored in the named database ``table`` of the LMDB environment at ``path``.

    Args:
        path: the environment directory (``data.lmdb``) or an ``lmdb://`` URL.
        table: the named database, ``[A-Za-z_][A-Za-z0-9_]*``; several per environment.
        flag: ``r``, ``w``, ``c`` or ``n`` as in ``dbm.open``; ``n`` empties only ``table``.
        mode: permission bits for the files this call creates (less the umask).
        map_size: the initial map size in bytes (default 1 GiB); it grows when needed.
        max_dbs: how many tables one environment may hold (default 128), fixed at first open.
        sync: fsync each commit (default true); false trades power-loss safety for speed.
    """

    name: ClassVar[str] = "lmdb"
    path: str
    table: str
    schemes: ClassVar[tuple[str, ...]] = ("lmdb",)
    suffixes: ClassVar[tuple[str, ...]] = (".lmdb",)
    native_transactions: ClassVar[bool] = True
    thread_safe_reads: ClassVar[bool] = True
    # The whole URL is taken so its query options are read, not dropped.
    takes_url: ClassVar[bool] = True
    durability: ClassVar[str] = (
        "each write is an LMDB transaction, fsynced at commit unless a writer opens it "
        "with sync=False"
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        table: str = "items",
        *,
        flag: str = "c",
        mode: int | None = None,
        map_size: int | None = None,
        max_dbs: int | None = None,
        sync: bool | None = None,
        timeout: float | None = None,
    ) -> None:
        self.table = check_table_name(table)
        check_flag(flag)
        text = os.fspath(path)
        given = {"map_size": map_size, "max_dbs": max_dbs, "sync": sync, "timeout": timeout}
        if split_scheme(text)[0] is not None:
            options = url_options(text, given, _OPTIONS)
            text = url_path(text)
        else:
            options = {k: v for k, v in given.items() if v is not None}
        self.path = os.path.abspath(text)
        inside = (os.path.join(self.path, name) for name in ("data.mdb", "lock.mdb"))
        for name in (self.path, *inside):
            # LMDB follows links: refuse one (or, to create, a folder or file) another user
            # planted in a shared sticky folder.
            resolve_data_path(name, create=flag in ("c", "n"))
        self.read_only = flag == "r"
        self._flag = flag
        self._mode = 0o666 if mode is None else mode
        self._map_size = int(options.get("map_size", DEFAULT_MAP_SIZE))
        self._max_dbs = int(options.get("max_dbs", 128))
        self._sync = bool(options.get("sync", True))
        # How long a write waits for another process's write transaction before LockedError.
        self.timeout = check_timeout(options.get("timeout", DEFAULT_TIMEOUT))
        # Open write transactions of transaction(), outermost first, each with the writes
        # made in it, to replay after growing the map.
        self._levels: list[tuple[Any, list[_Op]]] = []
        self._lmdb = _lmdb()
        self._shared: _Env | None = None
        # The shared environment when reads and single writes may take the short path: open
        # in this process (not an inherited handle) with the table there. Cleared on close
        # and, in a forked child, by _disarm_after_fork; the paths it skips re-arm it.
        self._ready: _Env | None = None
        self._db: Any = None
        self._counted: tuple[int, int] = (-1, 0)
        self._attach(initial=True)
        _live.add(self)

    # The shared environment.

    def _attach(self, *, initial: bool = False) -> None:
        lmdb = self._lmdb
        exists = os.path.exists(os.path.join(self.path, "data.mdb"))
        if not exists and self._flag in ("r", "w"):
            raise no_such("LMDB environment", self.path)
        with _envs_lock:
            shared = _envs.get(self.path)
            if shared is not None and shared.generation != fork_generation():
                _close_inherited(self.path, shared)
                shared = None
            if shared is not None and shared.readonly and not self.read_only:
                raise ValueError(
                    f"{self.path!r} is open read-only in this process; close those dicts "
                    "before opening it for writing (LMDB allows one handle per process)"
                )
            if shared is None:
                if not self.read_only:
                    # Made here: py-lmdb would give the directory the files' mode, without x.
                    os.makedirs(self.path, exist_ok=True)
                _check_data_file(self.path, os.path.join(self.path, "data.mdb"), self._flag)
                try:
                    env = lmdb.open(
                        self.path,
                        map_size=self._map_size,
                        max_dbs=self._max_dbs,
                        readonly=self.read_only,
                        sync=self._sync,
                        mode=self._mode,
                        create=not self.read_only,
                        # Reuse the last read transaction (py-lmdb 3 keeps none by default):
                        # a new one costs an allocation sized by max_dbs, zeroed, and a scan
                        # of the reader table, half of a get. See _settle_before_fork.
                        max_spare_txns=1,
                    )
                except lmdb.Error as exc:
                    raise self._translate(exc) from exc
                env.reader_check()  # free reader slots of processes that died
                # Inside the environment's folder, where a writer may create files anyway.
                lock = os.path.join(self.path, ".persistdict-lock")
                gate = None if self.read_only else WriterGate(self.path, lock)
                shared = _Env(env, self.read_only, fork_generation(), gate=gate)
                _envs[self.path] = shared
            shared.users += 1
        self._shared = shared
        self._generation = shared.generation
        try:
            # flag "w", like "r", wants the table to be there: a mistyped name must not read
            # as an empty dict (nor be created), as on SQLite and PostgreSQL.
            must_exist = initial and self._flag in ("r", "w")
            self._db = self._open_db(create=not self.read_only and not must_exist)
            if self._db is None and must_exist:
                raise MissingTableError(repr(self.path), self.table, self._table_names())
            if initial and self._flag == "n":
                self._write(lambda txn: txn.drop(self._db, delete=False))
        except BaseException:
            self._detach()
            raise
        self._arm()

    def _arm(self) -> None:
        shared = self._shared
        usable = shared is not None and self._db is not None
        self._ready = shared if usable and self._generation == fork_generation() else None
        self._counted = (-1, 0)  # (snapshot id, entries) of the last count(); see count()

    def _open_db(self, *, create: bool) -> Any:
        lmdb = self._lmdb
        env = self._env_for_io()
        try:
            # py-lmdb opens a table of a writable environment (this process's handle may be
            # writable for a reader too) in a write transaction, even one that exists: so
            # opening waits, up to timeout, for another process's transaction.
            with self._guard(), self._gated():
                try:
                    return env.open_db(self.table.encode(), create=create)
                except lmdb.MapResizedError:
                    # Another process grew the map since this one was opened (seen on
                    # reattaching after fork: tests/concurrency/test_fork.py): adopt its size.
                    env.set_mapsize(0)
                    return env.open_db(self.table.encode(), create=create)
        except lmdb.NotFoundError:
            return None  # read-only and no writer created the table yet
        except lmdb.DbsFullError as exc:
            raise ValueError(
                f"{self.path!r} already holds max_dbs={self._max_dbs} tables; reopen the "
                "environment with a larger max_dbs="
            ) from exc

    def _table_names(self) -> list[str]:
        """The tables of the environment: the keys of LMDB's main database, where it keeps
        the names of the named databases (persistdict stores nothing else there)."""
        env = self._env_for_io()
        with self._guard(), env.begin() as txn:
            return [
                bytes(name).decode("utf-8", "replace")
                for name in txn.cursor().iternext(values=False)
            ]

    def _detach(self) -> None:
        self._ready = None
        shared, self._shared = self._shared, None
        if shared is None:
            return
        with _envs_lock:
            shared.users -= 1
            if shared.users == 0 and _envs.get(self.path) is shared:
                del _envs[self.path]
                if shared.generation == fork_generation():
                    shared.env.close()
                if shared.gate is not None:
                    shared.gate.close()

    def _env_for_io(self) -> Any:
        shared = self._shared
        if shared is None:
            raise closed_error(self.describe())
        if self._generation != fork_generation():
            # A forked child must not use the parent's environment handle (LMDB's rule).
            self._levels = []
            self._ready = self._shared = None
            self._attach()
            shared = self._shared
            assert shared is not None
        return shared.env

    @contextmanager
    def _gated(self, writing: bool = True) -> Iterator[None]:
        """Hold the environment's writer gate (see _Env.gate) for a write transaction; the
        caller holds the environment lock."""
        shared = self._shared
        gate = None if shared is None or not writing else shared.gate
        if gate is None:
            yield
            return
        gate.enter(self.timeout, self.describe())
        try:
            yield
        finally:
            gate.leave()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        shared = self._shared
        assert shared is not None
        with shared.lock:
            try:
                yield
            except self._lmdb.Error as exc:
                raise self._translated(exc) from exc

    def _translate(self, exc: Exception) -> Exception:
        lmdb = self._lmdb
        if isinstance(exc, lmdb.BadValsizeError):
            return ValueError(
                f"{self.path!r}: a key is longer than LMDB's limit of 511 UTF-8 bytes ({exc})"
            )
        if isinstance(
            exc,
            (
                lmdb.CorruptedError,
                lmdb.InvalidError,
                lmdb.VersionMismatchError,
                lmdb.PageNotFoundError,
            ),
        ):
            return CorruptError(
                f"{self.path!r} is not a usable LMDB environment ({exc}); it was left "
                "untouched. Restore a backup or check the path"
            )
        if isinstance(exc, lmdb.DiskError):
            # Not an OSError in py-lmdb: callers handling a full disk would miss it.
            full = "No space" in str(exc)
            return OSError(
                errno.ENOSPC if full else errno.EIO,
                f"{exc}. That write was not committed; every write returned before it is "
                f"kept. {'Free some space' if full else 'Check the disk'} and retry",
                self.path,
            )
        if isinstance(exc, lmdb.ReadonlyError) and self.read_only:
            # Readers write too: each takes a slot in lock.mdb (py-lmdb's EACCES is this class).
            return PermissionError(
                errno.EACCES,
                f"can't read {self.path!r}: LMDB readers register in its lock file lock.mdb, "
                f"and this user may not open it for writing or create it ({exc}). Give this "
                "user write access to lock.mdb and its folder (through a group both users "
                "share, say), or copy the environment somewhere writable",
            )
        if isinstance(exc, lmdb.ReadonlyError) or getattr(exc, "code", None) == errno.EROFS:
            # A writer this user or the file system doesn't allow: as on SQLite.
            return ReadOnlyError(f"{self.path!r} can't be written: {exc}")
        return exc

    # Growing the map.

    def _grow(self, env: Any, *, needed: bool) -> None:
        """Double the map if asked or if more than half of it is used. Only called with no
        transaction of this process open on ``env``."""
        info = env.info()
        used = (info["last_pgno"] + 1) * env.stat()["psize"]
        if needed or used * 2 > info["map_size"]:
            env.set_mapsize(info["map_size"] * 2)

    def _write(self, work: Callable[[Any], Any], *, grow: bool = False) -> Any:
        """Run ``work(txn)`` in a write transaction of its own, growing the map as needed.

        ``grow`` first doubles the map if more than half of it is used: worth its two
        environment calls before a batch, not before each single write, which simply runs
        again on a doubled map in the rare case it finds the map full.
        """
        lmdb = self._lmdb
        if self.read_only:
            self.check_writable()
        env = self._env_for_io()
        if self._levels:
            return work(self._levels[-1][0])
        shared = self._shared
        assert shared is not None
        with shared.lock:
            if shared.writer not in (None, self):
                raise LockedError(
                    f"{self.describe()}: another dict on this environment is inside "
                    "transaction() in this thread; LMDB allows one write transaction"
                )
            try:
                if grow:
                    self._grow(env, needed=False)
                while True:
                    try:
                        with self._gated(), env.begin(write=True, db=self._db) as txn:
                            return work(txn)
                    except lmdb.MapFullError:
                        self._grow(env, needed=True)
                    except lmdb.MapResizedError:
                        env.set_mapsize(0)  # another process grew it: adopt its size
            except lmdb.Error as exc:
                raise self._translated(exc) from exc

    def _translated(self, exc: Exception) -> Exception:
        """The persistdict error to raise for ``exc``; ``exc`` itself is re-raised if none."""
        translated = self._translate(exc)
        if translated is exc:
            raise exc
        return translated

    def _in_txn(self, op: _Op) -> Any:
        """Apply one write inside transaction(), replaying the block on a larger map if full."""
        while True:
            try:
                result = self._apply(self._levels[-1][0], op)
            except self._lmdb.MapFullError:
                self._regrow_and_replay()
                continue
            self._levels[-1][1].append(op)
            return result

    def _apply(self, txn: Any, op: _Op) -> Any:
        # Every transaction of this backend is begun with db=self._db, the default of put and
        # delete; passing it again costs a keyword parse in py-lmdb.
        kind = op[0]
        if kind == "put":
            return txn.put(op[1], op[2])
        if kind == "del":
            return txn.delete(op[1])
        if kind == "many":
            return txn.cursor(db=self._db).putmulti(op[1])
        if kind == "drop":
            return txn.drop(self._db, delete=False)
        # A mistyped tag must not empty the table; the transaction it is in is aborted.
        raise ValueError(f"unknown LMDB write operation {kind!r}")

    def _begin_root(self, env: Any) -> Any:
        while True:
            try:
                return env.begin(write=True, db=self._db)
            except self._lmdb.MapResizedError:
                env.set_mapsize(0)  # another process grew it: adopt its size

    def _regrow_and_replay(self) -> None:
        env = self._env_for_io()
        first_id = self._levels[0][0].id()
        for txn, _ in reversed(self._levels):
            txn.abort()
        self._grow(env, needed=True)
        while True:
            root = self._begin_root(env)
            if root.id() != first_id:
                root.abort()
                self._levels = [(None, [])] * len(self._levels)  # all aborted
                raise LockedError(
                    f"{self.describe()}: the map filled inside transaction() and another "
                    "process wrote before it could be grown; nothing was written. Run the "
                    "block again"
                )
            try:
                parent = None
                for depth, (_, log) in enumerate(self._levels):
                    txn = root if depth == 0 else env.begin(write=True, db=self._db, parent=parent)
                    for op in log:
                        self._apply(txn, op)
                    self._levels[depth] = (txn, log)
                    parent = txn
                return
            except self._lmdb.MapFullError:
                root.abort()
                self._grow(env, needed=True)

    # The Backend methods.

    # Reads. PersistDict calls get, contains and count without its own lock
    # (thread_safe_reads): each holds the environment lock, which transaction() keeps for its
    # whole block, so another thread's read waits for the block instead of using its write
    # transaction, and a map growth (set_mapsize remaps the file) never runs under a reader.
    # The lock is taken with acquire()/release(): a `with` costs twice as much, and these
    # calls are lmdbm's whole `in` time.

    def _read(self, work: Callable[[Any], Any]) -> Any:
        """Run ``work(txn)`` in a read transaction (``txn`` is None if the table is missing).

        py-lmdb keeps the last finished read transaction and renews it on the next
        ``begin()``, so each call is cheap and still sees every commit made before it, by this
        process or another; none stays open between calls to pin pages.
        """
        shared = self._ready
        if shared is not None:
            shared.lock.acquire()
            try:
                if not self._levels:
                    try:
                        txn = shared.env.begin(self._db)  # positional: keywords parse slowly
                    except self._lmdb.Error:
                        pass  # the map was grown by another process, or worse: see below
                    else:
                        try:
                            return work(txn)
                        except self._lmdb.Error as exc:
                            raise self._translated(exc) from exc
                        finally:
                            txn.abort()  # back to py-lmdb for the next begin()
            finally:
                shared.lock.release()
        return self._read_slowly(work)

    def _read_slowly(self, work: Callable[[Any], Any]) -> Any:
        env = self._env_for_io()
        with self._guard():
            if self._levels:
                return work(self._levels[-1][0])
            if self._db is None:
                self._db = self._open_db(create=False)
                if self._db is None:
                    return work(None)
                self._arm()
            while True:
                try:
                    with env.begin(db=self._db) as txn:
                        return work(txn)
                except self._lmdb.MapResizedError:
                    env.set_mapsize(0)

    # get, contains and count are _read inlined, each a single frame: they are the whole
    # of `d[k]`, `k in d` and len(d) but for PersistDict's own frame. Inside this thread's
    # transaction(), or when begin() fails (the map grown by another process), they take the
    # general path.

    def get(self, key: str) -> Any:
        try:
            k = key.encode() if key else _EMPTY_KEY
        except UnicodeEncodeError:
            raise KeyError(key) from None  # such a key can't have been stored
        found: Any = _UNREAD
        shared = self._ready
        if shared is not None:
            shared.lock.acquire()
            try:
                if not self._levels:
                    txn = shared.env.begin(self._db)  # positional: keywords parse slowly
                    try:
                        found = txn.get(k)
                    finally:
                        txn.abort()  # back to py-lmdb for the next begin()
            except self._lmdb.Error:
                found = _UNREAD
            finally:
                shared.lock.release()
        if found is _UNREAD:
            found = self._read_slowly(lambda txn: None if txn is None else txn.get(k))
        if found is None:
            raise KeyError(key)
        return found

    def contains(self, key: str) -> bool:
        try:
            k = key.encode() if key else _EMPTY_KEY
        except UnicodeEncodeError:
            return False
        shared = self._ready
        if shared is not None:
            shared.lock.acquire()
            try:
                if not self._levels:
                    txn = shared.env.begin(self._db)
                    try:
                        return txn.get(k) is not None
                    finally:
                        txn.abort()
            except self._lmdb.Error:
                pass
            finally:
                shared.lock.release()
        return bool(self._read_slowly(lambda txn: txn is not None and txn.get(k) is not None))

    def count(self) -> int:
        # A read transaction's id is that of the last commit before it, by any process: the
        # same id means the same data, so the count taken at that id still holds. Reading the
        # id is cheap; stat() builds a dict and cost more than lmdbm's whole len().
        shared = self._ready
        if shared is not None:
            shared.lock.acquire()
            try:
                if not self._levels:
                    txn = shared.env.begin(self._db)
                    try:
                        snapshot = txn.id()
                        if snapshot == self._counted[0]:
                            return self._counted[1]
                        entries = int(txn.stat(self._db)["entries"])
                    finally:
                        txn.abort()
                    self._counted = (snapshot, entries)
                    return entries
            except self._lmdb.Error:
                pass
            finally:
                shared.lock.release()
        entries = self._read_slowly(lambda txn: 0 if txn is None else txn.stat(self._db)["entries"])
        return int(entries)

    # Single writes: the short path of _write and _put_ops, for the same reason as the reads.
    # It gives way to them (which grow the map, adopt another process's size, translate
    # errors) on any LMDB error: the failed transaction wrote nothing, so running the write
    # again there is exact.

    def set(self, key: str, value: Any) -> None:
        try:
            k = key.encode() if key else _EMPTY_KEY
            v = value.encode() if isinstance(value, str) else bytes(value)
        except UnicodeEncodeError:
            k, v = self._encode_key(key), value_bytes(key, value)  # raise the clear error
        if len(k) > 511:
            self._encode_key(key)
        op = ("put", k, v)
        shared = self._ready
        if shared is not None and self._levels:
            # Inside transaction(), whose thread holds the environment lock for the whole
            # block: the put goes straight into the block's transaction, logged for a replay.
            # The general path's three calls cost 5% of a batched write.
            shared.lock.acquire()
            try:
                if self._levels:  # another thread waited above for the block to end
                    txn, log = self._levels[-1]
                    txn.put(k, v)
                    log.append(op)
                    return
            except self._lmdb.MapFullError:
                # The failed put spoiled the transaction: replay the block on a larger map,
                # then the general path below puts this on the new one.
                with self._guard():
                    self._regrow_and_replay()
            except self._lmdb.Error as exc:
                raise self._translated(exc) from exc
            finally:
                shared.lock.release()
        if self._write_one(op) is _UNREAD:
            self._put_ops([op])

    def _write_one(self, op: _Op) -> Any:
        """``op`` applied on the short path, or ``_UNREAD`` if it must take the long one."""
        shared = self._ready
        if shared is None or self.read_only:
            return _UNREAD
        shared.lock.acquire()
        try:
            if self._levels:  # this thread is inside transaction(): the env lock was its own
                return self._in_txn(op)
            if shared.writer is None:
                gate = shared.gate
                if gate is None:
                    return _UNREAD
                gate.enter(self.timeout, self.describe())
                try:
                    with shared.env.begin(self._db, None, True) as txn:  # db, parent, write
                        return self._apply(txn, op)
                finally:
                    gate.leave()
        except self._lmdb.Error:
            pass
        finally:
            shared.lock.release()
        return _UNREAD

    def _encode_key(self, key: str) -> bytes:
        try:
            k = _key(key)
        except UnicodeEncodeError as exc:
            raise ValueError(f"can't store key {key!r} as UTF-8: {exc}") from None
        if len(k) > 511:
            raise ValueError(
                f"can't store key {key[:40]!r}...: it is {len(k)} UTF-8 bytes and LMDB "
                "keys are limited to 511"
            )
        return k

    def _put_ops(self, ops: list[_Op], *, grow: bool = False) -> Any:
        self.check_writable()
        if self._levels:
            with self._guard():
                return [self._in_txn(op) for op in ops][-1]

        def work(txn: Any) -> Any:
            return [self._apply(txn, op) for op in ops][-1]

        return self._write(work, grow=grow)

    def delete(self, key: str) -> None:
        self.check_writable()
        try:
            k = _key(key)
        except UnicodeEncodeError:
            raise KeyError(key) from None
        op = ("del", k)
        found = self._write_one(op)
        if found is _UNREAD:
            found = self._put_ops([op])
        if not found:
            raise KeyError(key)

    def set_many(self, items: Iterable[tuple[str, Any]]) -> None:
        items = list(items)
        rows: list[tuple[bytes, bytes]] | None
        try:  # one pass for the usual batch: str values, keys neither empty nor too long
            rows = [(k.encode(), v.encode()) for k, v in items]
        except (AttributeError, UnicodeEncodeError):
            rows = None
        if rows:
            sizes = list(map(len, map(_first, rows)))
            if not min(sizes) or max(sizes) > 511:
                rows = None
        if rows is None:  # the empty key's byte, bytes values, or the clear error
            rows = [(self._encode_key(k), value_bytes(k, v)) for k, v in items]
        if rows:
            self._put_ops([("many", rows)], grow=True)

    def clear(self) -> None:
        self._put_ops([("drop",)])

    def _page(self, after: bytes | None, values: bool) -> list[Any]:
        """Up to ``_PAGE`` raw keys (or key, value pairs) after ``after``, in one short read."""

        def work(txn: Any) -> list[Any]:
            if txn is None:
                return []
            cur = txn.cursor(db=self._db)
            found = cur.set_range(after) if after is not None else cur.first()
            if found and after is not None and cur.key() == after:
                found = cur.next()
            if not found:
                return []
            return list(itertools.islice(cur.iternext(keys=True, values=values), _PAGE))

        rows: list[Any] = self._read(work)
        return rows

    def _keys(self, raw: list[bytes]) -> list[str]:
        try:
            return list(map(bytes.decode, raw))
        except UnicodeDecodeError:  # the empty key's byte, or damage: _unkey tells them apart
            return [_unkey(k, self.path) for k in raw]

    def _items(self, rows: list[tuple[bytes, bytes]]) -> Iterator[tuple[str, bytes]]:
        # Split and paired again by itemgetter and zip, in C, not by two list comprehensions.
        return zip(self._keys(list(map(_first, rows))), map(_second, rows), strict=True)

    def _raw_pages(self, values: bool) -> Iterator[list[Any]]:
        """Every page of ``_page``, each read when the caller gets to it."""
        after: bytes | None = None
        while True:
            rows = self._page(after, values)
            yield rows
            if len(rows) < _PAGE:
                return
            after = rows[-1][0] if values else rows[-1]

    # Pages are decoded by map() and handed out by chain(), in C: a generator step per key
    # cost a third of iter.
    def iter_items(self) -> Iterator[tuple[str, Any]]:
        return itertools.chain.from_iterable(map(self._items, self._raw_pages(values=True)))

    def iter_keys(self) -> Iterator[str]:
        return itertools.chain.from_iterable(map(self._keys, self._raw_pages(values=False)))

    # Transactions.

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.check_writable()
        env = self._env_for_io()
        shared = self._shared
        assert shared is not None
        with self._guard():
            if not self._levels:
                if shared.writer is not None:
                    raise LockedError(
                        f"{self.describe()}: another dict on this environment is inside "
                        "transaction() in this thread; LMDB allows one write transaction"
                    )
                gate = shared.gate
                if gate is not None:
                    gate.enter(self.timeout, self.describe())
                try:
                    self._grow(env, needed=False)
                    txn = self._begin_root(env)
                except BaseException:
                    if gate is not None:
                        gate.leave()
                    raise
                shared.writer = self
            else:
                txn = env.begin(write=True, db=self._db, parent=self._levels[-1][0])
            self._levels.append((txn, []))
            try:
                yield
            except BaseException:
                txn, _ = self._levels.pop()
                if txn is not None:
                    txn.abort()
                if not self._levels:
                    shared.writer = None
                    if shared.gate is not None:
                        shared.gate.leave()
                raise
            txn, log = self._levels.pop()
            if self._levels:
                txn.commit()
                self._levels[-1][1].extend(log)
                return
            try:
                self._commit_root(txn, log)
            finally:
                shared.writer = None
                if shared.gate is not None:
                    shared.gate.leave()

    def _commit_root(self, txn: Any, log: list[_Op]) -> None:
        while True:
            try:
                txn.commit()
                return
            except self._lmdb.MapFullError:
                self._levels = [(txn, log)]
                self._regrow_and_replay()
                txn, log = self._levels.pop()

    # Lifecycle.

    def flush(self) -> None:
        pass  # every write is committed before it returns

    def close(self) -> None:
        shared = self._shared
        if shared is None:
            return
        if self._generation != fork_generation():
            # The inherited lock may be held by a parent thread that doesn't exist here.
            self._levels = []
            with _envs_lock:
                _close_inherited(self.path, shared)
            self._ready = self._shared = None
            return
        with shared.lock:  # a read another thread is running ends first (thread_safe_reads)
            for txn, _ in reversed(self._levels):
                if txn is not None:
                    txn.abort()
            self._levels = []
            self._detach()

    def describe(self) -> str:
        ro = " read-only" if self.read_only else ""
        return f"lmdb {self.path!r} table {self.table!r}{ro}"
