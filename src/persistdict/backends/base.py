"""The backend contract and the defaults every built-in backend inherits.

A backend stores ``str`` keys. There are two kinds, declared by ``stores_objects``:

* snapshot backends (json, csv, pickle files) keep the live Python objects in memory and
  encode the whole file on ``flush()``; values given to ``set`` are objects;
* per-key backends (sqlite, dbm, lmdb, redis, postgres, memory) store each value as the
  ``str``/``bytes`` a serializer produced; ``PersistDict`` encodes and decodes.

Only the methods of [`Backend`][persistdict.Backend] are required.
[`BackendBase`][persistdict.BackendBase] adds correct but
slow defaults for the rest, which a backend overrides where its storage can do better.
"""

from __future__ import annotations

import errno
import importlib
import inspect
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, suppress
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from persistdict.errors import ReadOnlyError
from persistdict.locking import DEFAULT_TIMEOUT
from persistdict.urls import split_scheme, url_path

__all__ = [
    "Backend",
    "BackendBase",
    "MissingTableError",
    "adapt",
    "check_commit_every",
    "check_flag",
    "check_table_name",
    "declared",
    "fork_generation",
    "import_driver",
    "value_bytes",
]

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def import_driver(module: str, backend: str, extra: str) -> Any:
    """Import an optional client library on first use; if missing, name the extra to install.

    Backends call this inside their constructor, so ``import persistdict`` never needs it.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"the {backend} backend needs {module}: pip install 'python-persistdict[{extra}]'"
        ) from exc


def check_flag(flag: object) -> str:
    """Return ``flag`` if it is one of dbm's letters r, w, c, n; else ``ValueError``."""
    if flag not in ("r", "w", "c", "n"):
        raise ValueError(f"flag must be one of 'r', 'w', 'c' or 'n', not {flag!r}")
    return str(flag)


def check_commit_every(commit_every: object) -> int:
    """Return ``commit_every`` if it is an int >= 0 (0 commits every write); else ``ValueError``."""
    if not isinstance(commit_every, int) or commit_every < 0:
        raise ValueError(f"commit_every must be an int >= 0, not {commit_every!r}")
    return commit_every


def check_table_name(table: object) -> str:
    """Return ``table`` if it is a valid table name, else raise ``ValueError``/``TypeError``.

    Names are spliced into SQL and Redis keys, so only identifier characters are allowed; the
    check runs before any I/O.
    """
    if not isinstance(table, str):
        raise TypeError(f"table name must be a str, not {type(table).__name__}")
    if not _TABLE_NAME.match(table):
        raise ValueError(
            f"invalid table name {table!r}: use letters, digits and underscores, "
            "not starting with a digit"
        )
    return table


def value_bytes(key: str, value: str | bytes) -> bytes:
    """The bytes a per-key backend stores for a serializer's output: ``str`` as UTF-8.

    ``ValueError`` naming the key for text UTF-8 can't hold (a lone surrogate), raised before
    anything is written.
    """
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"can't store the value for key {key!r} as UTF-8: {exc}") from None
    return bytes(value)


class MissingTableError(FileNotFoundError):
    """A table (SQLite, PostgreSQL) opened with flag ``"r"`` or ``"w"`` is not there.

    A ``FileNotFoundError``, as a missing file is; ``tables`` lists the tables that are there,
    so a command line can word its own hint.
    """

    def __init__(self, where: str, table: str, tables: Iterable[str]) -> None:
        self.where, self.table, self.tables = where, table, sorted(tables)
        super().__init__(
            errno.ENOENT,
            f"{where} has no table {table!r}; {self.listing()}. Pass table= one of them, or "
            "open with flag='c' to create it",
        )

    def listing(self, limit: int = 20) -> str:
        """``"its tables: a, b"`` (at most ``limit`` names), or ``"it has no tables"``."""
        if not self.tables:
            return "it has no tables"
        shown = ", ".join(self.tables[:limit])
        more = len(self.tables) - limit
        return f"its tables: {shown}" + (f" and {more} more" if more > 0 else "")


_fork_generation = 0


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent only on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


def fork_generation() -> int:
    """A number that changes in a child process after ``os.fork()``.

    Backends holding a connection compare it with the value they saw when connecting, which is
    cheaper than calling ``os.getpid()`` on every operation.
    """
    return _fork_generation


@runtime_checkable
class Backend(Protocol):
    """What ``PersistDict`` needs from storage. See the module docstring for the two kinds.

    These are the methods both shapes of backend have. To list its keys, a backend has, in
    today's shape, ``iter_keys()`` (streaming) and ``count()``; in the original shape (SPEC
    section 8), ``keys()``, ``__len__()`` and ``clear()``, with ``str`` values. Both pass
    ``isinstance(backend, Backend)`` and work with ``PersistDict(backend)``; ``adapt``
    wraps them. Everything else (``stores_objects``, ``read_only``, ``schemes``...) is
    optional and declared, with its default, on [`BackendBase`][persistdict.BackendBase]; a
    backend that does not subclass it gets those defaults from ``adapt`` and ``declared``.
    """

    def get(self, key: str) -> Any:
        """Return the stored value; ``KeyError`` if missing."""

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``, replacing any value there; an object for snapshot
        backends, the serializer's ``str``/``bytes`` for per-key ones."""

    def delete(self, key: str) -> None:
        """Remove ``key``; ``KeyError`` if missing."""

    def contains(self, key: str) -> bool:
        """Whether ``key`` is stored, without reading its value."""

    def flush(self) -> None:
        """Make every write so far durable (a snapshot backend writes its file here)."""

    def close(self) -> None:
        """Release everything; a second call does nothing."""


class BackendBase:
    """Defaults for the optional part of the contract.

    Class attributes describe the backend to the registry and to ``open()``:
    ``name``, the URL ``schemes`` and file ``suffixes`` it claims, and capabilities. What
    ``open()``, detection, the command line and ``persistdict.migrate`` ask of a backend is
    declared here too, each with a default and who calls it; see "Writing a backend".
    """

    name: ClassVar[str] = "custom"
    #: URL schemes and file suffixes detection picks this backend for (``detect_backend``).
    schemes: ClassVar[tuple[str, ...]] = ()
    suffixes: ClassVar[tuple[str, ...]] = ()
    #: A snapshot backend: ``set`` gets live objects, no serializer applies (``open()`` and
    #: ``PersistDict`` read it), and ``--recover`` can restore its previous generation.
    stores_objects: ClassVar[bool] = False
    #: ``transaction()`` is atomic in storage; otherwise PersistDict keeps an undo journal.
    native_transactions: ClassVar[bool] = False
    #: Data outlives ``close()`` (false only for the memory backend).
    persistent: ClassVar[bool] = True
    #: ``get``, ``contains``, ``count`` and each step of ``iter_keys``/``iter_items`` may be
    #: called by any thread without the dict's lock: the backend serializes them itself and
    #: makes them wait while another thread is inside ``transaction()``. ``PersistDict`` then
    #: skips its lock on those reads (unless it has a writeback cache to guard).
    thread_safe_reads: ClassVar[bool] = False
    #: The constructor takes the whole URL (network stores), not a file path: read by
    #: ``open_arguments`` and ``local_path``.
    takes_url: ClassVar[bool] = False

    read_only: bool = False

    @staticmethod
    def sniff(head: bytes) -> bool:
        """Whether the first bytes of an existing file belong to this backend; detection asks
        it (through ``recognizes``) when neither a URL scheme nor a suffix decided."""
        return False

    # The optional methods. Each default is written only in terms of the required ones.

    def iter_items(self) -> Iterator[tuple[str, Any]]:
        for key in self.iter_keys():
            try:
                yield key, self.get(key)
            except KeyError:  # deleted by someone else between the two calls
                continue

    def set_many(self, items: Iterable[tuple[str, Any]]) -> None:
        for key, value in items:
            self.set(key, value)

    def clear(self) -> None:
        # Collect first: deleting while iterating is undefined on most stores.
        for key in list(self.iter_keys()):
            try:
                self.delete(key)
            except KeyError:
                continue

    def transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError(f"the {self.name} backend has no native transactions")

    def check(self) -> list[str]:
        """Look for damage in the stored data; one line per problem, ``[]`` if none.

        This default reads every key and value once, which finds whatever the storage itself
        reports as unreadable; backends with an integrity check of their own use that instead.
        """
        problems: list[str] = []
        try:
            for key in self.iter_keys():
                try:
                    self.get(key)
                except KeyError:  # deleted meanwhile
                    continue
                except Exception as exc:
                    problems.append(f"{self.describe()}: key {key!r} can't be read: {exc}")
        except Exception as exc:
            problems.append(f"{self.describe()}: listing the keys failed: {exc}")
        return problems

    def describe(self) -> str:
        """A short label for ``repr``; must never contain a password."""
        return self.name

    @property
    def buffers_writes(self) -> bool:
        """Whether a write may wait in this process until ``flush()``/``close()``.

        ``PersistDict`` keeps a dict that may hold such writes alive until it is flushed or
        the interpreter exits, so they are saved even if it is dropped unclosed; any other
        unclosed dict is closed when collected. This default guesses from the capabilities
        (snapshot files, ``commit_every`` batches, stores without transactions such as dbm);
        a backend that knows better overrides it.
        """
        if self.read_only or not self.persistent:
            return False
        if self.stores_objects or not self.native_transactions:
            return True
        return bool(getattr(self, "commit_every", 0))

    def check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyError(
                f"{self.describe().removesuffix(' read-only')} was opened read-only "
                "(flag='r'); open it with flag='w' or 'c' to change it"
            )

    # Hooks PersistDict calls around the mapping: fork, refresh, exit, shared writers. Each
    # default suits a backend that needs nothing there; none is required.

    #: Seconds the backend waits for another process's lock. At interpreter exit
    #: ``PersistDict`` waits as long for a thread still using the dict before saving it.
    timeout: float = DEFAULT_TIMEOUT

    @property
    def shares_writers(self) -> bool:
        """Whether several processes may write this store at once.

        True for per-key storage with transactions (sqlite, lmdb, redis, postgres); false for
        snapshot files and dbm (one writer at a time, a file lock) and for memory (one
        process). ``PersistDict`` then runs ``pop``, ``popitem`` and ``setdefault`` in a
        ``transaction()``, atomic across processes; otherwise its own lock is enough.
        """
        return self.native_transactions and self.persistent and not self.stores_objects

    def prepare_fork(self) -> None:
        """Settle pending state just before ``os.fork()`` (SQLite commits an idle
        ``commit_every`` batch, dbm saves its index).

        ``PersistDict`` calls it for every open dict, holding the dict's lock; a dict another
        thread is using is skipped, since the fork must not wait. It must not raise. This
        default does nothing.
        """

    def refresh(self) -> None:
        """Reload what another program saved since this backend loaded or saved it.

        ``PersistDict.refresh()`` calls it under the dict's lock. Snapshot files override it;
        this default refuses (``ValueError``), since a backend reading storage on every call
        has nothing to reload.
        """
        raise ValueError(f"{self.describe()} reads storage directly; it needs no refresh()")

    #: What a failed save at the end of the outermost ``transaction()`` leaves: false (a
    #: failed COMMIT) undoes the block; true keeps its writes for a later ``flush()`` (the undo
    #: journal of backends without native transactions). ``PersistDict`` keeps its writeback
    #: cache in step with the storage either way.
    failed_commit_keeps_writes: ClassVar[bool] = False

    def forget_transactions(self) -> None:
        """Drop the state of ``transaction()`` blocks that will never end.

        ``PersistDict`` calls it in a child process after ``os.fork()``, for a dict whose lock
        a parent thread held: that thread does not exist in the child, so its blocks never
        unwind. This default does nothing (a storage transaction belongs to its connection,
        which backends open again in the child); the undo journal empties itself.
        """

    # Abstract part, for type checkers and subclass authors.

    def get(self, key: str) -> Any:
        raise NotImplementedError

    def set(self, key: str, value: Any) -> None:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def contains(self, key: str) -> bool:
        try:
            self.get(key)
        except KeyError:
            return False
        return True

    def iter_keys(self) -> Iterator[str]:
        """Yield every key once. Required in today's shape; it must stream (never load all
        keys at once), since ``PersistDict`` iterates through it."""
        raise NotImplementedError

    def count(self) -> int:
        """How many keys are stored. This default counts ``iter_keys()``; a backend that
        can answer without a scan should override it (``len()`` calls it)."""
        return sum(1 for _ in self.iter_keys())

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    # What callers outside backends/ ask of a backend: ``persistdict.open`` (how a target
    # string becomes constructor arguments), detection, the command line (``persistdict
    # info``) and ``persistdict.migrate``. Each has a default here; nothing outside
    # backends/ tests a backend's name or probes it with getattr.

    #: Reading the store runs code its writer chose (pickle): detection never picks this
    #: backend (``recognizes`` says no) and ``persistdict.migrate`` refuses to read it unless
    #: trusted (``trust_pickle``).
    runs_code: ClassVar[bool] = False
    #: Text ``persistdict info`` prints under "durability": what survives a crash.
    durability: ClassVar[str] = "see the backends table in the README"
    #: How ``persistdict.migrate`` (``convert``, ``load``) writes an existing local store whole:
    #: ``"transaction"``, inside one ``transaction()`` (a kill rolls it back);
    #: ``"new_file"``, a whole new file built beside it and renamed over it; ``"file_copy"``, a
    #: copy of the file written and renamed back (dbm, which has no transactions). The last
    #: two hold the backend's writer lock (``persistdict.locking.FileLock``) meanwhile.
    rewrite: ClassVar[Literal["transaction", "new_file", "file_copy"]] = "transaction"
    #: Options ``persistdict.migrate`` adds when it builds a new file in a scratch folder,
    #: which it fsyncs itself before moving it into place (SQLite: ``synchronous="OFF"``).
    #: An option the caller gave wins.
    scratch_options: ClassVar[Mapping[str, Any]] = {}
    #: The local file or folder the data lives in (``persistdict info`` adds up its size);
    #: ``None`` for a server or memory.
    path: str | None = None
    #: The table (SQLite, PostgreSQL, LMDB) or hash (Redis) the dict is, for ``persistdict
    #: info``; ``None`` for a backend that keeps one dict per file.
    table: str | None = None

    def tables(self) -> list[str] | None:
        """The names of the dicts (tables) stored beside this one, sorted; ``None`` if this
        backend does not list them. ``persistdict info`` calls it after opening, to show them
        and to tell a mistyped ``--table`` (a read-only open of a missing table is empty)."""
        return None

    @classmethod
    def has_table(cls, path: str, table: str) -> bool:
        """Whether the existing file at ``path`` holds ``table``, read before anything opens
        it. ``persistdict.migrate`` calls it before copying into a local store: a table that
        was not there is removed again if the copy fails (``drop_empty_table``). This default,
        true, says there is nothing to remove."""
        return True

    @classmethod
    def drop_empty_table(cls, path: str, table: str) -> None:
        """Remove ``table`` from the file at ``path`` if it holds no keys. Called by
        ``persistdict.migrate`` after a failed copy into a table ``has_table`` said was not
        there (opening created it, outside the copy's transaction)."""

    @classmethod
    def recognizes(cls, path: str, head: bytes) -> bool:
        """Whether the existing file (or files) at ``path``, starting with ``head``, is this
        backend's. Detection asks each backend in registry order when neither a URL scheme nor
        a suffix decided. This default asks ``sniff(head)`` and ``owns(path)``, and never says
        yes for a backend that ``runs_code``: that one must be asked for by name."""
        return not cls.runs_code and cls.sniff(head) and cls.owns(path)

    @classmethod
    def owns(cls, path: str) -> bool:
        """Whether a file at ``path`` that one of this backend's ``suffixes`` or its ``sniff``
        claims is really its own. Detection falls back to the file's content when not (a
        SQLite file written by ``dbm.sqlite3`` is dbm's). This default: yes."""
        return True

    @classmethod
    def local_path(cls, target: str) -> str | None:
        """The local path of the store ``target`` (a path or URL) names, or ``None`` for a
        server or memory. ``persistdict.migrate`` and ``persistdict check`` call it before
        opening. This default: ``None`` when not ``persistent``, or when the backend takes
        whole URLs and claims no file suffix (a server); else the path of a file URL."""
        if not cls.persistent or (cls.takes_url and not cls.suffixes):
            return None
        return url_path(target) if split_scheme(target)[0] is not None else target

    @classmethod
    def accepted_options(cls) -> frozenset[str] | None:
        """The keyword options the constructor takes; ``None`` if it takes any
        (``**options``). This default reads the constructor's signature, once per class."""
        return keyword_names(cls)

    @classmethod
    def open_arguments(
        cls, target: str, options: dict[str, Any], serializer: Any
    ) -> tuple[str, dict[str, Any]]:
        """How ``persistdict.open`` calls the constructor for ``target``: the location (the
        whole URL if ``takes_url``, else the path of a file URL) and the keyword arguments.

        ``options`` are the user's, in order: the general ones (``flag``, ``mode``, ``table``,
        ``commit_every``; ``timeout`` only if given), then the backend's own. A general option
        the constructor doesn't take is left out while at ``open()``'s default (a backend of
        the original protocol was given a path and nothing else), and ``timeout`` always (a
        backend without it has no lock to wait for); any other is refused with a
        ``TypeError`` listing what the constructor takes. ``serializer`` is passed if the
        constructor takes it (PostgreSQL picks its column types from it).
        """
        location = target
        if split_scheme(target)[0] is not None and not cls.takes_url:
            location = url_path(target)
        accepted = cls.accepted_options()
        if accepted is None:
            return location, dict(options)
        arguments: dict[str, Any] = {}
        for name, value in options.items():
            if name in accepted:
                arguments[name] = value
            elif not _LEFT_OUT_UNLESS_TAKEN.get(name, _never)(value):
                takes = ", ".join(sorted(accepted - {"self", "path", "location", "url"}))
                raise TypeError(f"the {cls.name} backend does not take {name}=; it takes: {takes}")
        if "serializer" in accepted:
            arguments["serializer"] = serializer
        return location, arguments


def _never(value: object) -> bool:
    return False


#: ``open()``'s general options that a constructor not taking them is called without, and
#: for which values: at ``open()``'s default, or (``timeout``) any value.
_LEFT_OUT_UNLESS_TAKEN: dict[str, Callable[[Any], bool]] = {
    "flag": lambda value: value == "c",
    "mode": lambda value: value is None,
    "table": lambda value: value == "items",
    "commit_every": lambda value: value == 0,
    "timeout": lambda value: True,
}

# inspect.signature() took a fifth of open() on LMDB: asked once per constructor.
_keyword_names: dict[Any, frozenset[str] | None] = {}


def keyword_names(factory: Any) -> frozenset[str] | None:
    """Keyword names ``factory`` takes; ``None`` if it takes any (``**kwargs``)."""
    try:
        return _keyword_names[factory]
    except (KeyError, TypeError):  # not asked yet, or unhashable
        pass
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    names: frozenset[str] | None = None
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        names = frozenset(p.name for p in params if p.kind in kinds)
    with suppress(TypeError):
        _keyword_names[factory] = names
    return names


_CURRENT = ("iter_keys", "count")
_ORIGINAL = ("keys", "__len__", "clear")


class _Adapted(BackendBase):
    """Wraps an object that has only the [`Backend`][persistdict.Backend] methods, in
    today's shape."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.stores_objects = bool(getattr(inner, "stores_objects", False))  # type: ignore[misc]
        self.name = type(inner).__name__  # type: ignore[misc]
        self.read_only = bool(getattr(inner, "read_only", False))

    def get(self, key: str) -> Any:
        return self._inner.get(key)

    def set(self, key: str, value: Any) -> None:
        self.check_writable()
        self._inner.set(key, value)

    def delete(self, key: str) -> None:
        self.check_writable()
        self._inner.delete(key)

    def contains(self, key: str) -> bool:
        return bool(self._inner.contains(key))

    def iter_keys(self) -> Iterator[str]:
        return iter(self._inner.iter_keys())

    def count(self) -> int:
        return int(self._inner.count())

    def flush(self) -> None:
        self._inner.flush()

    def close(self) -> None:
        self._inner.close()


class _AdaptedOriginal(_Adapted):
    """Wraps a backend of the original protocol: ``keys()``, ``len()``, ``clear()``, str values.

    Some of those answered ``None`` for a missing key and ignored the deletion of one; a
    stored value is a ``str``, never ``None``, so both are told apart safely here.
    """

    def get(self, key: str) -> Any:
        value = self._inner.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def delete(self, key: str) -> None:
        self.check_writable()
        if not self._inner.contains(key):
            raise KeyError(key)
        self._inner.delete(key)

    def iter_keys(self) -> Iterator[str]:
        return iter(self._inner.keys())

    def count(self) -> int:
        return len(self._inner)

    def clear(self) -> None:
        self.check_writable()
        self._inner.clear()


def adapt(backend: Any) -> BackendBase:
    """Return ``backend`` as a [`BackendBase`][persistdict.BackendBase], wrapping a bare
    [`Backend`][persistdict.Backend] of either shape (today's, or the original one)."""
    if isinstance(backend, BackendBase):
        return backend
    if isinstance(backend, Backend):
        if all(hasattr(backend, name) for name in _CURRENT):
            return _Adapted(backend)
        if all(hasattr(backend, name) for name in _ORIGINAL):
            return _AdaptedOriginal(backend)
    shared = ("get", "set", "delete", "contains", "flush", "close")
    missing = [name for name in shared + _CURRENT if not hasattr(backend, name)]
    raise TypeError(
        f"{type(backend).__name__} is not a persistdict backend (missing: {', '.join(missing)}):"
        f" it needs the methods {', '.join(shared)}, and either {' and '.join(_CURRENT)} or, "
        f"in the original protocol, {', '.join(_ORIGINAL)}"
    )


# Backends that do not subclass BackendBase (a third-party class, or a factory function,
# written for the Backend protocol or the original one) get the defaults of the declared
# contract here, in one place: their class-level facts are read once, with the defaults of
# BackendBase, into a subclass that stands for them; their instances are wrapped by adapt().
_declared: dict[tuple[Any, str], type[BackendBase]] = {}
_CLASS_FACTS = ("schemes", "suffixes", "stores_objects", "persistent", "takes_url")


def declared(factory: Any, name: str) -> type[BackendBase]:
    """The contract of the backend ``factory``, registered as ``name``, as a
    [`BackendBase`][persistdict.BackendBase] subclass whose class attributes and class methods
    callers read: ``factory`` itself if it subclasses ``BackendBase``; otherwise a subclass
    holding what ``factory`` declares, and ``BackendBase``'s defaults for the rest."""
    if isinstance(factory, type) and issubclass(factory, BackendBase):
        return factory
    try:
        return _declared[factory, name]
    except KeyError:
        pass
    except TypeError:  # an unhashable factory: described anew each time
        return _describe(factory, name)
    cls = _declared[factory, name] = _describe(factory, name)
    return cls


def _describe(factory: Any, name: str) -> type[BackendBase]:
    facts: dict[str, Any] = {
        fact: getattr(factory, fact) for fact in _CLASS_FACTS if hasattr(factory, fact)
    }
    facts["name"] = getattr(factory, "name", name)
    sniff = getattr(factory, "sniff", None)
    if callable(sniff):
        facts["sniff"] = staticmethod(lambda head: bool(sniff(head)))
    facts["accepted_options"] = classmethod(lambda cls: keyword_names(factory))
    facts["__module__"] = getattr(factory, "__module__", __name__)
    facts["__doc__"] = getattr(factory, "__doc__", None)
    label = getattr(factory, "__name__", type(factory).__name__)
    return type(label, (BackendBase,), facts)
