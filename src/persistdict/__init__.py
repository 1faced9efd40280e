"""persistdict: a persistent dictionary that survives crashes, on pluggable storage.

>>> import persistdict
>>> with persistdict.open("memory://") as d:
...     d["config"] = {"root_dir": "/srv"}
...     d["config"]["root_dir"]
'/srv'
"""

from persistdict.backends import available as available_backends
from persistdict.backends import register_backend as register_backend
from persistdict.backends.base import Backend as Backend
from persistdict.backends.base import BackendBase as BackendBase
from persistdict.backends.csv_file import CsvFileBackend as CsvFileBackend
from persistdict.backends.dbm_file import DbmBackend as DbmBackend
from persistdict.backends.json_file import JsonFileBackend as JsonFileBackend
from persistdict.backends.memory import MemoryBackend as MemoryBackend
from persistdict.backends.pickle_file import PickleFileBackend as PickleFileBackend
from persistdict.backends.sqlite import SqliteBackend as SqliteBackend
from persistdict.errors import ClosedError as ClosedError
from persistdict.errors import ConflictError as ConflictError
from persistdict.errors import CorruptError as CorruptError
from persistdict.errors import Error as Error
from persistdict.errors import LockedError as LockedError
from persistdict.errors import ReadOnlyError as ReadOnlyError
from persistdict.mapping import PersistDict as PersistDict
from persistdict.opener import open as open
from persistdict.serializers import JsonSerializer as JsonSerializer
from persistdict.serializers import PickleSerializer as PickleSerializer
from persistdict.serializers import Serializer as Serializer

__version__ = "0.2.0.dev0"
"""This release's version, written only here (pyproject.toml reads it): `persistdict --version`."""

__all__ = [
    "Backend",
    "BackendBase",
    "ClosedError",
    "ConflictError",
    "CorruptError",
    "CsvFileBackend",
    "DbmBackend",
    "Error",
    "JsonFileBackend",
    "JsonSerializer",
    "LockedError",
    "MemoryBackend",
    "PersistDict",
    "PickleFileBackend",
    "PickleSerializer",
    "ReadOnlyError",
    "Serializer",
    "SqliteBackend",
    "__version__",
    "available_backends",
    "open",
    "register_backend",
]
