"""Import from the persistent dicts people use today, or copy between any two backends.

>>> import persistdict, persistdict.migrate
>>> summary = persistdict.migrate.copy("old.sqlite", "new.db", source="sqlitedict",
...                                     trust_pickle=True)          # doctest: +SKIP
>>> print(summary.line())                                           # doctest: +SKIP
copied 1000 keys from sqlitedict 'old.sqlite' table 'unnamed' to sqlite 'new.db' ...

Source kinds (``source=``):

* ``"sqlitedict"``: a table of a sqlitedict file (default table ``unnamed``), pickled values
  or the JSON text of its ``encode=json.dumps`` variant;
* ``"shelve"``: a ``shelve`` file, through whichever stdlib ``dbm`` opens it;
* ``"diskcache"``: a diskcache ``Cache``/``Index`` folder, read through its ``cache.db``,
  values it kept in separate files included, expired entries left out;
* ``"permadict"``: a PermaDict state file: a JSON object, ``key,value`` CSV rows or a pickled
  dict, whatever its extension (told apart by content unless ``src_format=`` says);
* ``"persistdict-0"``: the original persistdict module's files: a JSON file whose values
  are JSON strings holding JSON, or its SQLite tables (default table ``items``);
* any backend name (``"json"``, ``"sqlite"``, ``"dbm"``...) or ``"auto"``: a target
  [`persistdict.open`][persistdict.open] reads. ``"auto"`` also recognises, because it is certain, a
  diskcache folder (its ``Cache`` and ``Settings`` tables), a sqlitedict table (the exact
  schema sqlitedict creates) and a shelve file (a dbm database holding pickles).

Safety: pickled sources are refused unless ``trust_pickle=True`` (unpickling runs code); the
source is opened read-only; the destination is written in one transaction or built beside
its final place and moved there whole (see ``persistdict.migrate.target``).
"""

from persistdict.migrate.base import UntrustedPickleError
from persistdict.migrate.copying import ON_ERROR, Progress, Summary, UnstorableValueError, copy
from persistdict.migrate.kinds import KINDS, detect_source, open_source
from persistdict.migrate.target import DestinationExistsError

__all__ = [
    "KINDS",
    "ON_ERROR",
    "DestinationExistsError",
    "Progress",
    "Summary",
    "UnstorableValueError",
    "UntrustedPickleError",
    "copy",
    "detect_source",
    "open_source",
]
