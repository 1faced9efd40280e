"""The backend registry: built-ins by dotted path, third parties by entry point.

Nothing is imported until a backend is asked for. Third-party packages add backends under the
entry-point group ``persistdict.backends``; the group is read once, the first time a name,
URL scheme or suffix is not a built-in. ``register_backend`` adds one at run time.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from functools import cache
from types import MappingProxyType
from typing import Any

from persistdict.backends.base import BackendBase, declared

__all__ = [
    "ENTRY_POINT_GROUP",
    "SNAPSHOT_FORMATS",
    "available",
    "backend_class",
    "declared_class",
    "loaded_classes",
    "register_backend",
    "registry",
]

ENTRY_POINT_GROUP = "persistdict.backends"

#: The snapshot file formats, each a backend of that name: what ``format=`` (``--format``)
#: picks for a file whose extension says nothing.
SNAPSHOT_FORMATS = ("json", "csv", "pickle")

_BUILTIN: dict[str, str] = {
    "json": "persistdict.backends.json_file:JsonFileBackend",
    "csv": "persistdict.backends.csv_file:CsvFileBackend",
    "pickle": "persistdict.backends.pickle_file:PickleFileBackend",
    "sqlite": "persistdict.backends.sqlite:SqliteBackend",
    "dbm": "persistdict.backends.dbm_file:DbmBackend",
    "memory": "persistdict.backends.memory:MemoryBackend",
    "redis": "persistdict.backends.redis_hash:RedisBackend",
    "postgres": "persistdict.backends.postgres_table:PostgresBackend",
    "lmdb": "persistdict.backends.lmdb_env:LmdbBackend",
}

_loaded: dict[str, Any] = {}
#: Backends loaded so far, by name; read-only.
registry: Mapping[str, Any] = MappingProxyType(_loaded)


def _import(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def entry_points(*, group: str) -> Any:
    """The installed entry points of ``group``, via ``importlib.metadata.entry_points``."""
    # Imported here: importlib.metadata takes longer to import than all of persistdict, and only
    # an unknown backend name or available() needs it.
    from importlib.metadata import entry_points as installed

    return installed(group=group)


@cache
def _third_party() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> list[str]:
    """Names of every backend that can be asked for, built-in and installed."""
    return sorted(set(_BUILTIN) | set(_third_party()) | set(_loaded))


def backend_class(name: str) -> Any:
    """Return the backend class (or factory) called ``name``; ``ValueError`` if unknown."""
    if name not in _loaded:
        if name in _BUILTIN:
            _loaded[name] = _import(_BUILTIN[name])
        elif name in _third_party():
            _loaded[name] = _third_party()[name].load()
        else:
            raise ValueError(f"unknown backend {name!r}; choose one of: {', '.join(available())}")
    return _loaded[name]


def declared_class(name: str) -> type[BackendBase]:
    """The contract of backend ``name``: its class if it subclasses ``BackendBase``, else
    one holding its declarations and the defaults (see ``persistdict.backends.base.declared``).
    ``open()``, detection, the command line and migrate read backends through it."""
    return declared(backend_class(name), name)


def loaded_classes(*, include_third_party: bool = False) -> list[type[BackendBase]]:
    """Every built-in backend's contract (and, if asked, every installed one's), in registry
    order, for detection: see ``declared_class``.

    Importing a built-in backend module never imports its driver, so this stays cheap.
    """
    names = list(_BUILTIN)
    if include_third_party:
        names += [n for n in _third_party() if n not in names]
    names += [n for n in _loaded if n not in names]
    return [declared_class(n) for n in names]


def register_backend(name: str, factory: Any, *, replace: bool = False) -> None:
    """Make ``factory`` available as backend ``name``; refuse to shadow one unless ``replace``."""
    if not replace and (name in _loaded or name in _BUILTIN or name in _third_party()):
        raise ValueError(f"a backend named {name!r} exists already; pass replace=True to swap it")
    _loaded[name] = factory
