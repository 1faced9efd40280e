"""Corrupt-input fuzzing: truncations, bit flips and junk fed to ``open`` for every format.

For each mutated file, opening it (as a writer, the path that could overwrite) must either
succeed with exactly the data the format's reference reader finds in those bytes (the stdlib
``json``, ``csv`` and ``pickle``; ``sqlite3`` for SQLite) or raise ``CorruptError`` naming the
file, never another exception, never hang, and never change the file's bytes, not even when
the dict is closed again. "The right data" is the reference reader's, because a flipped digit
in a JSON number or a cut at a CSV line end leaves a valid file with other contents: no format
without a checksum can tell, and persistdict must then neither invent nor drop anything.

SQLite has no checksums either, so for it the check is the weaker one: ``open`` and reading
everything either work or raise ``CorruptError``, and opening read-only never writes.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import pickle
import signal
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import persistdict
from persistdict.backends.base import MissingTableError
from tests.durability.evidence import knob

EXAMPLES = knob("PERSISTDICT_FUZZ_EXAMPLES", 150)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # file_with() stops a hang after 10 s; timing alone proves nothing
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,  # CI runs the same cases every time; raise the knob to explore
)
DATA: dict[str, Any] = {
    "name": "persistdict",
    "count": 12345,
    "ratio": 0.5,
    "nested": {"list": [1, 2, 3], "flag": True, "none": None},
    "text": 'line one\nline two, with a comma and "quotes"',
}
CSV_DATA = {k: v if isinstance(v, str) else json.dumps(v) for k, v in DATA.items()}
FORMATS = {
    "json": ("state.json", DATA),
    "csv": ("state.csv", CSV_DATA),
    "pickle": ("state.bin", DATA),
}


def reference(backend: str, raw: bytes) -> dict[str, Any] | None:
    """What the stdlib reads from ``raw`` as a dict of str keys, or ``None`` if it can't."""
    try:
        if backend == "json":
            data = json.loads(raw)
        elif backend == "pickle":
            data = pickle.Unpickler(io.BytesIO(raw)).load()  # as pickle.load(file) reads
        else:
            rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline=""), strict=True))
            if rows[:1] == [["key", "value"]]:
                rows = rows[1:]
            rows = [r for r in rows if r]
            if any(len(r) != 2 for r in rows) or len({r[0] for r in rows}) != len(rows):
                return None
            data = dict(rows)
    except Exception:  # a broken pickle raises almost anything
        return None
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        return None
    return data


def original(backend: str) -> bytes:
    name, data = FORMATS[backend]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        with persistdict.open(path, backend=backend) as d:
            d.update(data)
        return path.read_bytes()


ORIGINALS = {backend: original(backend) for backend in FORMATS}


@st.composite
def mutations(draw: st.DrawFn, raw: bytes) -> bytes:
    """A truncation, some bit flips, a junk splice, or junk alone."""
    kind = draw(st.sampled_from(["truncate", "flip", "splice", "junk"]))
    if kind == "truncate":
        return raw[: draw(st.integers(0, len(raw) - 1))]
    if kind == "flip":
        flipped = bytearray(raw)
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(raw) - 1))
            flipped[at] ^= 1 << draw(st.integers(0, 7))
        return bytes(flipped)
    if kind == "splice":
        start = draw(st.integers(0, len(raw)))
        end = draw(st.integers(start, len(raw)))
        return raw[:start] + draw(st.binary(max_size=64)) + raw[end:]
    return draw(st.binary(max_size=256))


@contextlib.contextmanager
def file_with(name: str, raw: bytes) -> Iterator[Path]:
    """``raw`` as the file ``name`` in a fresh folder, for at most 10 s of work."""

    def hung(signum: int, frame: Any) -> None:
        raise TimeoutError(f"opening a mutated {name} took more than 10 s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, 10)
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / name
            path.write_bytes(raw)
            yield path
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _open_and_close(path: Path, backend: str) -> dict[str, Any] | None:
    """Open as a writer and close without changes: the data, or ``None`` on CorruptError."""
    try:
        d = persistdict.open(path, backend=backend)
    except persistdict.CorruptError as exc:
        message = str(exc)
    else:
        with d:
            return dict(d)
    assert repr(str(path)) in message, "the error does not name the file"
    return None


@pytest.mark.parametrize("backend", sorted(FORMATS))
def test_mutated_snapshot_opens_right_or_raises_corrupt_error(backend: str) -> None:
    name = FORMATS[backend][0]

    @FUZZ
    @given(raw=mutations(ORIGINALS[backend]))
    def check(raw: bytes) -> None:
        with file_with(name, raw) as path:
            found = _open_and_close(path, backend)
            assert path.read_bytes() == raw, "opening (and closing) changed the file"
        assert found == reference(backend, raw)

    check()


def _sqlite_original() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.db"
        with persistdict.open(path) as d:
            d.update(DATA)
        # One file, no WAL beside it: what a fuzzed copy of the database would be.
        with contextlib.closing(sqlite3.connect(path)) as cx:
            cx.execute("PRAGMA journal_mode=DELETE")
        return path.read_bytes()


SQLITE = _sqlite_original()


def _read_sqlite(path: Path, flag: str) -> str:
    """Open, read every item, run check(); the error's message, or ``""``.

    A writer may also get ``ReadOnlyError``: a header declaring a newer file format than this
    SQLite writes (a flipped version byte) makes SQLite open the file read-only. A reader may
    get ``MissingTableError`` naming the file: a file cut to 0 bytes is an empty database.
    """
    other = MissingTableError if flag == "r" else persistdict.ReadOnlyError
    expected = (persistdict.CorruptError, other)
    try:
        with persistdict.open(path, flag=flag) as d:
            # items(), one scan: dict(d) would look each listed key up again, and a damaged
            # index can list a key its lookup then misses (KeyError); check() reports that.
            list(d.items())
            len(d)
            d.backend.check()
    except expected as exc:
        return str(exc)
    return ""


@FUZZ
@given(raw=mutations(SQLITE))
def test_mutated_sqlite_opens_or_raises_corrupt_error(raw: bytes) -> None:
    with file_with("data.db", raw) as path:
        message = _read_sqlite(path, "r")
        assert path.read_bytes() == raw, "a read-only open changed the file"
        assert not message or repr(str(path)) in message
        # As a writer SQLite may write (its journal, a WAL header): only the errors matter.
        message = _read_sqlite(path, "c")
        assert not message or repr(str(path)) in message
