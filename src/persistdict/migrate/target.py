"""Writing a whole destination so that a failure, a signal or a kill leaves nothing
half-written.

Three ways, chosen by what the destination is:

* a file or folder that does not exist yet is built in a scratch folder beside it and
  moved into place only once complete and closed (each moved file fsynced first, the folder
  after), so a failed, interrupted or killed run leaves no destination at all;
* an existing JSON, CSV or pickle file, or a dbm kept in one file, is rebuilt the same way
  (under its writer lock) and replaces the old one in one rename. A dbm kept in several
  files (dbm.dumb) can't be swapped in one step, so writing into an existing one is refused;
* an existing SQLite or LMDB file, or a server (Redis, PostgreSQL), is written inside one
  storage ``transaction()``, which a kill rolls back.

Destinations are written through symlinks, as ``persistdict.open`` does. A scratch folder
holds its owner's lock file (the pid inside, the lock held while the process lives), so the
next run on that destination, and ``persistdict check``, remove those of dead processes only
(``remove_dead_scratches``). ``COMMIT`` tells the command line when the copy is being
made final, so that SIGINT/SIGTERM wait for the rename or commit in progress.
"""

from __future__ import annotations

import contextlib
import dbm
import os
import re
import shutil
import signal
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import persistdict
from persistdict.backends import declared_class
from persistdict.backends.base import MissingTableError
from persistdict.detect import detect_backend
from persistdict.errors import LockedError, no_such
from persistdict.fileio import (
    fsync_directory,
    fsync_file,
    give_owner_and_mode,
    refuse_read_only,
    resolve_data_path,
)
from persistdict.locking import DEFAULT_TIMEOUT, FileLock, lock_path_for
from persistdict.mapping import PersistDict
from persistdict.urls import split_scheme

__all__ = [
    "COMMIT",
    "EXISTING",
    "SCRATCH_MARKER",
    "DestinationExistsError",
    "Interrupted",
    "file_identities",
    "local_path",
    "remove_dead_scratches",
    "writing",
]

EXISTING = ("refuse", "replace", "merge")


class DestinationExistsError(persistdict.Error, FileExistsError):
    """The destination already holds data and the caller did not say what to do with it."""


def local_path(target: str, backend: str = "auto", fmt: str | None = None) -> str | None:
    """The local path ``target`` names (a path, or a file URL such as ``sqlite:///x.db``), or
    ``None`` for a server, memory, or a URL no backend claims."""
    if split_scheme(target)[0] is None:
        return target
    try:
        chosen = detect_backend(target, fmt) if backend == "auto" else backend
        return declared_class(chosen).local_path(target)
    except (ValueError, KeyError):
        return None


# The files a store at PATH may consist of: dbm's (.dat/.dir/.bak, .db, .pag), and the
# database of a diskcache folder.
_COMPANIONS = (".dat", ".dir", ".bak", ".db", ".pag")


def file_identities(path: str) -> set[tuple[int, int]]:
    """(device, inode) of every existing file or folder the store at ``path`` consists of,
    symlinks followed: two spellings of one store (relative, absolute, through a link, as a
    URL) give the same identities."""
    candidates = [path, *(path + suffix for suffix in _COMPANIONS)]
    if os.path.isdir(path):
        candidates.append(os.path.join(path, "cache.db"))
    found = set()
    for candidate in candidates:
        try:
            st = os.stat(candidate)
        except (OSError, ValueError):
            continue
        found.add((st.st_dev, st.st_ino))
    return found


def _exists(path: str) -> bool:
    return os.path.exists(path) or bool(dbm.whichdb(path))


@contextmanager
def writing(
    target: str,
    *,
    backend: str = "auto",
    fmt: str | None = None,
    table: str = "items",
    existing: str = "refuse",
    **options: Any,
) -> Iterator[tuple[PersistDict, str]]:
    """Yield a dict to fill and a label naming the destination; on a normal exit the dict
    becomes the destination, on an exception nothing changes. A killed process leaves the
    destination as it was too, and its scratch folder is removed by the next run.

    Args:
        target: a path or URL, as for [`persistdict.open`][persistdict.open]. A path that
            is a symlink is written through: the file it points at is replaced, the link stays.
        backend: the destination's backend name, or ``"auto"`` to detect it as ``open`` does.
        fmt: ``"json"``, ``"csv"`` or ``"pickle"`` for a file whose extension says nothing.
        table: the table (sqlite, postgres) or hash (redis) to fill.
        existing: what to do when the destination already holds keys: ``"refuse"``
            (raise [`DestinationExistsError`][persistdict.migrate.DestinationExistsError]),
            ``"replace"`` them all, or ``"merge"``
            (keys written here win).
        **options: more options for [`persistdict.open`][persistdict.open].
    """
    if existing not in EXISTING:
        raise ValueError(f"existing must be one of {EXISTING}, not {existing!r}")
    chosen = detect_backend(target, fmt) if backend == "auto" else backend
    contract = declared_class(chosen)
    path = contract.local_path(target)
    if path is None:
        with _in_transaction(target, chosen, table, existing, options, None) as pair:
            yield pair
        return
    # One rule for every writer: open() writes through a symlink, so does this (and refuses
    # one another user planted in a shared sticky folder).
    real = os.fspath(resolve_data_path(path, create=True))
    folder = os.path.dirname(real)
    if not os.path.isdir(folder):
        raise no_such(f"folder {folder!r} to hold the file", path, "create it first")
    remove_dead_scratches(real)
    if not _exists(real):
        with _new_file(real, path, chosen, table, options) as pair:
            yield pair
        return
    if contract.rewrite == "transaction":
        with _in_transaction(target, chosen, table, existing, options, real) as pair:
            yield pair
        return
    # Replaced by a rename, which the folder allows: a file the user may not write (its
    # owner's chmod 444) is refused, as open() refuses to write it.
    refuse_read_only(real, *(real + suffix for suffix in _COMPANIONS))
    # The writer lock these backends take: no other persistdict writer changes the
    # destination while its copy is built and swapped in.
    lock = FileLock(real, options.get("timeout", DEFAULT_TIMEOUT))
    lock.acquire()
    try:
        rewrite = _new_snapshot if contract.rewrite == "new_file" else _dbm_copy
        with rewrite(real, path, chosen, existing, options) as pair:
            yield pair
    finally:
        lock.release()


@contextmanager
def _in_transaction(
    target: str,
    backend: str,
    table: str,
    existing: str,
    options: dict[str, Any],
    path: str | None,
) -> Iterator[tuple[PersistDict, str]]:
    # SQLite, LMDB, Redis and PostgreSQL: one storage transaction, so a kill at any point
    # leaves the destination as it was (the server or the file's journal undoes the rest).
    contract = declared_class(backend)
    table_was_new = path is not None and not contract.has_table(path, table)
    if existing == "refuse" and not table_was_new:
        _refuse_if_filled(target, backend, table, options)
    d: PersistDict | None = None
    try:
        # Opened inside the try: a signal arriving while open() creates the table still
        # drops it below.
        d = persistdict.open(target, "c", backend=backend, table=table, **options)
        with d.transaction():
            if existing == "replace":
                d.clear()
            yield d, d.backend.describe()
            COMMIT.enter()  # the transaction's exit commits: signals wait until it is done
        d.close()
    except BaseException:
        COMMIT.leave(done=False)
        if d is not None:
            d.close()
        if table_was_new and path is not None:
            contract.drop_empty_table(path, table)
        raise
    COMMIT.leave(done=True)


def _refuse_if_filled(target: str, backend: str, table: str, options: dict[str, Any]) -> None:
    # Looked at read-only: opening a snapshot file for writing may rewrite it on close.
    try:
        d = persistdict.open(target, "r", backend=backend, table=table, **options)
    except MissingTableError:
        return  # a table not created yet holds nothing to refuse
    with d:
        if len(d):
            raise _exists_error(_label(d), len(d))


def _label(d: PersistDict) -> str:
    return d.backend.describe().replace(" read-only", "")


def _exists_error(label: str, count: int) -> DestinationExistsError:
    held, them = ("1 key", "it") if count == 1 else (f"{count} keys", "them")
    return DestinationExistsError(
        f"{label} already holds {held}; pass --replace to replace {them} or --merge to "
        f"add to {them} (Python: existing='replace' or 'merge')"
    )


@contextmanager
def _new_snapshot(
    real: str, path: str, backend: str, existing: str, options: dict[str, Any]
) -> Iterator[tuple[PersistDict, str]]:
    # An existing snapshot file is replaced by a whole new one, built beside it (the caller
    # holds its writer lock). Opening it for writing instead would rewrite it on close even
    # after a failure (in the backend's own layout), and the promise is: a failure changes
    # no byte.
    with persistdict.open(real, "r", backend=backend, **options) as current:
        if existing == "refuse" and len(current):
            raise _exists_error(_label(current).replace(repr(real), repr(path)), len(current))
        keep = {} if existing == "replace" else dict(current.items())
    with _new_file(real, path, backend, "items", options, replacing=True) as (d, label):
        d.update(keep)
        yield d, label


def _dbm_files(real: str) -> list[str]:
    """The names (in ``real``'s folder) of the files the dbm database at ``real`` is made
    of, its ``.bak`` copy left out."""
    name = os.path.basename(real)
    if os.path.isfile(real):
        return [name]
    return [name + s for s in _COMPANIONS if s != ".bak" and os.path.isfile(real + s)]


@contextmanager
def _dbm_copy(
    real: str, path: str, backend: str, existing: str, options: dict[str, Any]
) -> Iterator[tuple[PersistDict, str]]:
    # dbm has no transactions: written in place, a kill leaves it half-written. So the
    # copy is written into a copy of it, which replaces it in one rename. A dbm kept in
    # several files (dbm.dumb's .dat and .dir, ndbm's .dir and .pag) can't be replaced in
    # one step, so that is refused before anything is written.
    files = _dbm_files(real)
    with persistdict.open(real, "r", backend=backend, **options) as current:
        count = len(current)
        kind = dbm.whichdb(real) or "dbm"
    if existing == "refuse" and count:
        raise _exists_error(f"dbm {path!r}", count)
    if len(files) != 1:
        names = " and ".join(repr(os.path.join(os.path.dirname(path), f)) for f in files)
        raise DestinationExistsError(
            f"dbm {path!r} is a {kind} database kept in several files ({names}), which can't "
            "be replaced together in one step, so a killed or interrupted copy into it could "
            "leave it half-written; nothing was written. Copy into a new file instead (and "
            "move it over the old one yourself), or into SQLite, which has transactions"
        )
    folder, name = os.path.split(real)
    with _scratch(folder, name) as scratch:
        building = os.path.join(scratch, name)
        shutil.copy2(os.path.join(folder, files[0]), os.path.join(scratch, files[0]))
        d = persistdict.open(building, "w", backend=backend, **options)
        try:
            if existing == "replace":
                d.clear()
            yield d, f"dbm {path!r}"
        finally:
            d.close()
        with COMMIT.point():
            _move_into_place(scratch, folder, name, replacing=True)


@contextmanager
def _new_file(
    real: str,
    path: str,
    backend: str,
    table: str,
    options: dict[str, Any],
    *,
    replacing: bool = False,
) -> Iterator[tuple[PersistDict, str]]:
    folder, name = os.path.split(real)
    with _scratch(folder, name) as scratch:
        # Every file is fsynced before it is moved into place (the backend may skip its own).
        options = {**declared_class(backend).scratch_options, **options}
        building = os.path.join(scratch, name)
        d = persistdict.open(building, "n", backend=backend, table=table, **options)
        label = d.backend.describe().replace(repr(building), repr(path))
        try:
            with d.transaction():
                yield d, label
        finally:
            d.close()
        if replacing:
            # Keep the owner, group and mode of the file being replaced, as every rewrite does.
            give_owner_and_mode(building, os.stat(real))
        with COMMIT.point():
            _move_into_place(scratch, folder, name, replacing=replacing)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised by the command line where the program was, so every
    ``finally`` and ``except BaseException`` on the way up (rollbacks, scratch removal)
    runs. ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Commit:
    """Whether this process is in a step a signal must not cut in two, and whether it made
    a copy final.

    The command line's SIGINT/SIGTERM handler only notes the signal in ``pending`` while
    ``active``. After a commit point (``point``: the rename or the commit that makes the
    copy the destination) the copy is complete and ``done`` is set; the command line then
    says so. After any other step (``holding_signals``) the signal is raised at once.
    """

    def __init__(self) -> None:
        self.active = False
        self.done = False
        self.pending: int | None = None

    def enter(self) -> None:
        self.active = True

    def leave(self, *, done: bool) -> None:
        self.active = False
        self.done = self.done or done

    @contextmanager
    def point(self) -> Iterator[None]:
        self.enter()
        try:
            yield
        except BaseException:
            self.leave(done=False)
            raise
        self.leave(done=True)

    @contextmanager
    def holding_signals(self) -> Iterator[None]:
        self.active = True
        try:
            yield
        finally:
            self.active = False
        pending, self.pending = self.pending, None
        if pending is not None:
            raise Interrupted(pending)


#: The commit state of this process (one copy at a time: the command line's).
COMMIT = _Commit()

# Scratch folders: ``.NAME.persistdict-convert-XXXXXXXX`` beside the destination, holding
# the copy being built and the owner's lock file (its pid inside, flock held while it runs).
SCRATCH_MARKER = ".persistdict-convert-"
_OWNER = "owner"
_STAGING_MARKER = ".persistdict-staging-"
_MOVING = "moving"
#: A scratch folder with no lock file yet is taken as live for this long after it was made.
_GRACE_SECONDS = 60.0


@contextmanager
def _scratch(folder: str, name: str) -> Iterator[str]:
    # The folder is made and locked under a staging name, and only then renamed to the
    # scratch name: a scratch folder is never without its owner's lock, even if the process
    # is killed (SIGKILL can't be held off) between making the folder and locking it. A
    # staging folder a kill left behind is empty and removed after the grace time.
    with COMMIT.holding_signals():
        staging = tempfile.mkdtemp(dir=folder, prefix=f".{name}{_STAGING_MARKER}")
        owner = FileLock(os.path.join(staging, _OWNER), 0)
        try:
            owner.acquire()  # held until the folder is gone: the sign its owner is alive
            scratch = os.path.join(
                folder, f".{name}{SCRATCH_MARKER}{staging[-8:]}"
            )  # the lock stays with the open file across the rename
            os.rename(staging, scratch)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            owner.release()
            raise
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        owner.release()


def _scratch_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(name)}{re.escape(SCRATCH_MARKER)}[a-z0-9_]{{8}}\Z")


def remove_dead_scratches(path: str | os.PathLike[str]) -> list[str]:
    """Remove the scratch folders that killed copies into ``path`` left; return them.

    A scratch folder is dead when no process holds its owner lock (the owner's pid is
    written in it; the lock goes with the process however it ends). A live one is never
    touched. A dead one that was moving a several-file copy into place (dbm.dumb) when its
    owner was killed is finished first, so the destination is the whole new copy.
    """
    real = os.path.realpath(path)
    folder, name = os.path.split(real)
    pattern = _scratch_pattern(name)
    removed: list[str] = []
    try:
        entries = os.listdir(folder)
    except OSError:
        return removed
    staging = re.compile(rf"\.{re.escape(name)}{re.escape(_STAGING_MARKER)}[a-z0-9_]{{8}}\Z")
    for entry in entries:
        if staging.match(entry):  # killed before it became a scratch folder: empty
            made = os.path.join(folder, entry)
            with contextlib.suppress(OSError):
                if time.time() - os.lstat(made).st_mtime >= _GRACE_SECONDS:
                    shutil.rmtree(made)
            continue
        if not pattern.match(entry):
            continue
        scratch = os.path.join(folder, entry)
        try:
            st = os.lstat(scratch)
            if not stat.S_ISDIR(st.st_mode):
                continue
            lock_file = lock_path_for(os.path.join(scratch, _OWNER))
            if not os.path.exists(lock_file):
                if time.time() - st.st_mtime < _GRACE_SECONDS:
                    continue  # just made; its owner is about to lock it
                shutil.rmtree(scratch)
                removed.append(scratch)
                continue
            owner = FileLock(os.path.join(scratch, _OWNER), 0)
            owner.acquire()
        except (LockedError, OSError):
            continue  # alive, or not ours to look into
        try:
            _finish_moving(scratch, folder)
            shutil.rmtree(scratch)
            removed.append(scratch)
        except OSError:
            pass
        finally:
            owner.release()
    return removed


def _finish_moving(scratch: str, folder: str) -> None:
    try:
        with open(os.path.join(scratch, _MOVING), encoding="utf-8") as f:
            names = f.read().split("\n")
    except FileNotFoundError:
        return
    moved = False
    for entry in filter(None, names):
        source = os.path.join(scratch, entry)
        if os.path.lexists(source) and not os.path.lexists(os.path.join(folder, entry)):
            os.replace(source, os.path.join(folder, entry))
            moved = True
    if moved:
        fsync_directory(folder)


def _move_into_place(scratch: str, folder: str, name: str, *, replacing: bool = False) -> None:
    # The backend may have made several files (dbm.dumb: .dat, .dir, .bak); move the ones
    # named after the destination and leave lock files behind.
    produced = sorted(e for e in os.listdir(scratch) if e == name or e.startswith(name + "."))
    for entry in produced:
        source = os.path.join(scratch, entry)
        if os.path.isfile(source):
            fd = os.open(source, os.O_RDONLY)
            try:
                fsync_file(fd)
            finally:
                os.close(fd)
    for entry in produced:
        final = os.path.join(folder, entry)
        if os.path.lexists(final) and not (replacing and entry == name):
            raise DestinationExistsError(
                f"{final!r} appeared while the copy ran; the copy was not moved into place"
            )
    if len(produced) > 1:
        # Several renames are not one step: say in the scratch what is being moved, so if
        # this process is killed half-way, the next run finishes the move (see
        # remove_dead_scratches) and the destination, which does not exist until its last
        # file is in place, ends whole.
        _write_synced(os.path.join(scratch, _MOVING), "\n".join(produced))
        fsync_directory(scratch)
    for entry in produced:
        os.replace(os.path.join(scratch, entry), os.path.join(folder, entry))
    fsync_directory(folder)


def _write_synced(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
        fsync_file(fd)
    finally:
        os.close(fd)
