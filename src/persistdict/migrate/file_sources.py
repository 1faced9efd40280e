"""Sources in other files: shelve, the original module's JSON, and what ``open`` reads."""

from __future__ import annotations

import dbm
import json
from collections.abc import Iterator
from typing import Any

import persistdict
from persistdict.detect import detect_backend
from persistdict.errors import CorruptError, no_such
from persistdict.migrate.base import Source, UntrustedPickleError, refusal

__all__ = ["NativeSource", "PersistDict0JsonSource", "ShelveSource"]


# shelve -------------------------------------------------------------------------------------


class ShelveSource(Source):
    """A :mod:`shelve` file: the stdlib ``dbm`` that ``dbm.whichdb`` names, pickled values."""

    kind = "shelve"
    needs_pickle = True

    def __init__(self, path: str) -> None:
        which = dbm.whichdb(path)
        if which is None:
            raise no_such("dbm database", path, "check the path")
        if which == "":
            raise CorruptError(f"{path!r} is not a dbm database that this Python can read")
        super().__init__(f"shelve {path!r}")
        self.pickle_reason = "shelve stores every value as a pickle"
        try:
            self._db: Any = dbm.open(path, "r")  # noqa: SIM115 - closed by close()
        except Exception as exc:  # the dbm modules raise their own error types, or worse
            raise CorruptError(f"can't open the shelve file {path!r} ({exc})") from exc

    def count(self) -> int | None:
        return len(self._db)

    def items(self) -> Iterator[tuple[Any, Any]]:
        for raw_key in self._db.keys():  # noqa: SIM118 - dbm objects are not iterable everywhere
            try:
                key: Any = raw_key.decode("utf-8")  # shelve's key encoding
            except UnicodeDecodeError:
                key = raw_key
            try:
                data = self._db[raw_key]
            except Exception as exc:
                raise CorruptError(f"{self.label}: can't read key {key!r} ({exc})") from exc
            yield key, self._unpickle(key, data)

    def close(self) -> None:
        self._db.close()


# The original persistdict module's JSON file ------------------------------------------------


class PersistDict0JsonSource(Source):
    """A JSON file written by the original module: every value is a JSON *string* holding
    the JSON of the real value (``{"cfg": "{\\"root\\": \\"/srv\\"}"}``)."""

    kind = "persistdict-0"

    def __init__(self, path: str) -> None:
        super().__init__(f"persistdict-0 JSON {path!r}")
        with open(path, "rb") as f:
            raw = f.read()
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorruptError(
                f"{path!r} is not valid JSON ({exc}); it may be truncated. Nothing was written"
            ) from exc
        if not isinstance(data, dict):
            raise CorruptError(f"{path!r} holds a JSON {type(data).__name__}, not an object")
        self._data: dict[str, Any] = data

    def count(self) -> int | None:
        return len(self._data)

    def items(self) -> Iterator[tuple[Any, Any]]:
        for key, text in self._data.items():
            if not isinstance(text, str):
                raise CorruptError(
                    f"{self.label}: the value of key {key!r} is a JSON {type(text).__name__}, "
                    "not a string holding JSON, so this is not a persistdict-0 file; convert it "
                    "without --from (it is an ordinary JSON file)"
                )
            try:
                yield key, json.loads(text)
            except json.JSONDecodeError as exc:
                raise CorruptError(
                    f"{self.label}: the value of key {key!r} is a string that is not JSON "
                    f"({exc.msg}), so this is not a persistdict-0 file"
                ) from exc


# Anything persistdict itself opens ----------------------------------------------------------


class NativeSource(Source):
    """A target :func:`persistdict.open` reads, opened with ``flag="r"``. A PermaDict state
    file is one of these: a JSON object, ``key,value`` CSV rows, or a pickled dict."""

    def __init__(
        self,
        target: str,
        *,
        kind: str = "persistdict",
        backend: str = "auto",
        fmt: str | None = None,
        table: str | None = None,
        trust_pickle: bool = False,
    ) -> None:
        self.kind = kind
        chosen = detect_backend(target, fmt) if backend == "auto" else backend
        if chosen == "pickle" and not trust_pickle:
            # The pickle backend unpickles the whole file as it opens: refuse before that.
            raise UntrustedPickleError(refusal(f"pickle file {target!r}", "it is a pickle file"))
        options: dict[str, Any] = {"backend": chosen}
        if table is not None:
            options["table"] = table
        self._dict = persistdict.open(target, "r", **options)
        super().__init__(self._dict.backend.describe().replace(" read-only", ""))

    def count(self) -> int | None:
        return len(self._dict)

    def items(self) -> Iterator[tuple[Any, Any]]:
        last: Any = None
        try:
            for key, value in self._dict.items():
                last = key
                yield key, value
        except (ValueError, TypeError) as exc:  # a stored value the serializer can't decode
            if isinstance(exc, persistdict.Error) and not isinstance(exc, CorruptError):
                raise
            where = "the first value" if last is None else f"the value after key {last!r}"
            found = str(exc) if isinstance(exc, CorruptError) else f"{where} can't be decoded"
            raise CorruptError(
                f"{self.label}: {found} ({type(exc).__name__}: {exc}). If another library wrote "
                "this file, name its kind with --from (Python: source=)"
            ) from exc

    def close(self) -> None:
        self._dict.close()
