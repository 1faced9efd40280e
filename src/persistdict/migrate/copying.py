"""The copy itself: batches from a source into a destination, with a summary."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import persistdict
from persistdict.mapping import PersistDict
from persistdict.migrate.kinds import open_source
from persistdict.migrate.target import EXISTING, file_identities, local_path, writing

__all__ = ["ON_ERROR", "Progress", "Summary", "UnstorableValueError", "copy"]

ON_ERROR = ("raise", "skip", "str")
"""The values [`copy`][persistdict.migrate.copy]'s ``on_error`` takes."""
_CHUNK = 1000

Progress = Callable[[int, "int | None", float], None]
"""A ``progress`` callback, called with (keys copied, keys in the source if known, seconds)."""


class UnstorableValueError(persistdict.Error, ValueError):
    """A key or value the destination can't hold, with ``on_error="raise"``."""


@dataclass(frozen=True)
class Summary:
    """What [`copy`][persistdict.migrate.copy] did. ``skipped`` and ``as_text`` pair each key with
    the reason."""

    source: str
    destination: str
    copied: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    as_text: list[tuple[str, str]] = field(default_factory=list)
    left_out: int = 0
    left_out_reason: str = ""
    seconds: float = 0.0
    #: Things the user may want to know, such as a source that looks double-encoded.
    notes: list[str] = field(default_factory=list)

    def line(self, limit: int = 5) -> str:
        """One line with the counts, naming up to ``limit`` skipped or converted keys."""
        keys = "1 key" if self.copied == 1 else f"{self.copied} keys"
        text = f"copied {keys} from {self.source} to {self.destination} in {self.seconds:.1f}s"
        if self.seconds >= 1:  # a rate over less time measures the setup, not the copy
            text += f" ({self.copied / self.seconds:,.0f} keys/s)"
        for label, pairs in (("skipped", self.skipped), ("stored as text", self.as_text)):
            if pairs:
                named = ", ".join(f"{k} ({why})" for k, why in pairs[:limit])
                more = f" and {len(pairs) - limit} more" if len(pairs) > limit else ""
                text += f"; {label} {len(pairs)}: {named}{more}"
        if self.left_out:
            text += f"; left out {self.left_out} {self.left_out_reason}"
        return text


def _as_text(obj: Any) -> str:
    if isinstance(obj, (bytes, bytearray)):
        try:
            return bytes(obj).decode("utf-8")
        except UnicodeDecodeError:
            pass
    return str(obj)


class _Pump:
    """Moves items from a source into the destination dict in batches, applying
    ``on_error`` to the keys and values the destination refuses."""

    def __init__(self, d: PersistDict, on_error: str, src: str, dst: str) -> None:
        self.d = d
        self.on_error = on_error
        self.where = f"from {src} to {dst}"
        self.copied = 0
        self.skipped: list[tuple[str, str]] = []
        self.as_text: list[tuple[str, str]] = []
        self._converted_keys: dict[str, Any] = {}

    def _refuse(self, key: Any, problem: str, exc: BaseException | None = None) -> None:
        raise UnstorableValueError(
            f"can't copy key {key!r} {self.where}: {problem}. Nothing was written; pass "
            "--on-error skip to leave such items out or --on-error str to store them as "
            "text (Python: on_error='skip' or 'str')"
        ) from exc

    def key(self, key: Any, pending: dict[str, Any]) -> str | None:
        if isinstance(key, str):
            if key in self._converted_keys:
                self.skipped.append(
                    (repr(self._converted_keys.pop(key)), f"its text form {key!r} is a key too")
                )
            return key
        problem = f"keys must be str, not {type(key).__name__}"
        if self.on_error == "raise":
            self._refuse(key, problem)
        if self.on_error == "skip":
            self.skipped.append((repr(key), problem))
            return None
        text = _as_text(key)
        if text in pending or text in self.d:
            self.skipped.append((repr(key), f"its text form {text!r} is a key too"))
            return None
        self._converted_keys[text] = key
        self.as_text.append((repr(key), f"key stored as {text!r}"))
        return text

    def write(self, batch: dict[str, Any]) -> None:
        try:
            self.d.update(batch)
        except persistdict.Error:
            raise
        except (TypeError, ValueError):
            # Some value in the batch was refused before anything was written: find it.
            for key, value in batch.items():
                self.one(key, value)
            return
        self.copied += len(batch)

    def one(self, key: str, value: Any) -> None:
        try:
            self.d[key] = value
        except persistdict.Error:
            raise
        except (TypeError, ValueError) as exc:
            problem = str(exc)
            if self.on_error == "raise":
                self._refuse(key, problem, exc)
            if self.on_error == "skip":
                self.skipped.append((repr(key), problem))
                return
            self.d[key] = _as_text(value)
            self.as_text.append((repr(key), f"{type(value).__name__} value stored as text"))
        self.copied += 1


class _DoubleEncoded:
    """Watches values for the original module's layout: every value a string of JSON."""

    def __init__(self) -> None:
        self.seen = 0
        self.all_json_text = True

    def watch(self, items: Iterator[tuple[Any, Any]]) -> Iterator[tuple[Any, Any]]:
        for key, value in items:
            if self.all_json_text:
                self.all_json_text = _is_json_text(value)
                self.seen += 1
            yield key, value

    def note(self, src: str) -> list[str]:
        if not (self.all_json_text and self.seen):
            return []
        return [
            f"every value of {src} is a string holding JSON; if the original persistdict "
            "module wrote it, convert it again with --from persistdict-0 --replace (Python: "
            "source='persistdict-0', existing='replace')"
        ]


def _is_json_text(value: Any) -> bool:
    if not isinstance(value, str) or value[:1] not in ("{", "[", '"'):
        return False
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


def _batches(items: Iterator[tuple[Any, Any]], pump: _Pump) -> Iterator[dict[str, Any]]:
    batch: dict[str, Any] = {}
    for raw_key, value in items:
        key = pump.key(raw_key, batch)
        if key is None:
            continue
        batch[key] = value
        if len(batch) >= _CHUNK:
            yield batch
            batch = {}
    if batch:
        yield batch


def _check_not_same(src: str, dst: str, backend: str, fmt: str | None) -> None:
    # By identity, not by spelling: a relative path, a symlink or a sqlite:/// URL may all name
    # the source. Another table of one SQLite file is refused too: writing it would change the
    # source file (its journal mode, its size, a table sqlitedict never made) under the
    # library that owns it, and the source is promised to stay as it was.
    src_path = local_path(src)
    dst_path = local_path(dst, backend, fmt)
    if src_path is None or dst_path is None:
        return
    if file_identities(src_path) & file_identities(dst_path):
        raise ValueError(
            f"source and destination are the same file: {src!r} and {dst!r} "
            f"({os.path.realpath(src_path)!r}); convert never writes its source, not even "
            "another table of it, so copy into another file"
        )


def copy(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    source: str = "auto",
    trust_pickle: bool = False,
    on_error: str = "raise",
    src_table: str | None = None,
    src_format: str | None = None,
    dst_table: str = "items",
    dst_backend: str = "auto",
    dst_format: str | None = None,
    existing: str = "refuse",
    progress: Progress | None = None,
    **dst_options: Any,
) -> Summary:
    """Copy every item of ``src`` into ``dst``, all or nothing; return a
    [`Summary`][persistdict.migrate.Summary].

    Args:
        src: the source path or URL; opened read-only, never changed.
        dst: the destination path or URL, as for [`persistdict.open`][persistdict.open].
        source: the source kind (see [`persistdict.migrate`][persistdict.migrate]), a backend name,
            or ``"auto"``.
        trust_pickle: allow unpickling the source (shelve, sqlitedict, diskcache, pickle
            files). Unpickling runs code chosen by whoever wrote the data.
        on_error: a key or value the destination can't hold (a ``set`` into JSON, an
            ``int`` key): ``"raise"`` stops the copy naming the key and writes nothing;
            ``"skip"`` leaves it out; ``"str"`` stores its text (``bytes`` decoded as
            UTF-8 when they are). Either way the summary lists those keys.
        src_table: the source's table (sqlite-based kinds); by default the kind's usual one
            or the only key/value table in the file.
        src_format: ``"json"``, ``"csv"`` or ``"pickle"`` for a source file whose extension
            (or, for permadict, content) does not say.
        dst_table: the destination's table (sqlite, lmdb, redis, postgres).
        dst_backend: the destination's backend; ``"auto"`` detects it as
            [`persistdict.open`][persistdict.open] does.
        dst_format: ``"json"``, ``"csv"`` or ``"pickle"`` for a destination file whose
            extension does not say.
        existing: when ``dst`` already holds keys: ``"refuse"`` (default), ``"replace"``
            or ``"merge"``.
        progress: called after each batch with (keys copied, keys in the source if known,
            seconds so far).
        **dst_options: more options for opening the destination (``timeout=``...).

    Raises:
        UntrustedPickleError: the source needs unpickling and ``trust_pickle`` is false.
        UnstorableValueError: with ``on_error="raise"``, the first item that can't be stored.
        DestinationExistsError: ``dst`` holds keys and ``existing="refuse"``.
        CorruptError: the source can't be read (truncated, damaged); nothing was written.
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, not {on_error!r}")
    if existing not in EXISTING:
        raise ValueError(f"existing must be one of {EXISTING}, not {existing!r}")
    src_text, dst_text = os.fspath(src), os.fspath(dst)
    _check_not_same(src_text, dst_text, dst_backend, dst_format)
    start = time.monotonic()
    reader = open_source(
        src_text, source, table=src_table, fmt=src_format, trust_pickle=trust_pickle
    )
    try:
        total = reader.count()
        with writing(
            dst_text,
            backend=dst_backend,
            fmt=dst_format,
            table=dst_table,
            existing=existing,
            **dst_options,
        ) as (d, label):
            pump = _Pump(d, on_error, reader.label, label)
            items = reader.items()
            watcher = _DoubleEncoded()
            watched = watcher.watch(items) if reader.kind == "persistdict" else items
            try:
                for batch in _batches(watched, pump):
                    pump.write(batch)
                    if progress is not None:
                        progress(pump.copied, total, time.monotonic() - start)
            finally:
                # End the source's read transaction now, not whenever the generator is
                # collected (by then its connection is closed).
                close = getattr(items, "close", None)
                if close is not None:
                    close()
    finally:
        reader.close()
    return Summary(
        source=reader.label,
        destination=label,
        copied=pump.copied,
        skipped=pump.skipped,
        as_text=pump.as_text,
        left_out=reader.left_out,
        left_out_reason=reader.left_out_reason,
        seconds=time.monotonic() - start,
        notes=watcher.note(reader.label),
    )
