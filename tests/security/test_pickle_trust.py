"""Pickle runs only behind an explicit opt-in, whatever a crafted file holds.

Every crafted source here holds pickles whose ``__reduce__`` opens a marker file for writing:
if anything unpickles them, the marker appears. They go through ``persistdict.open()``,
``migrate.copy()`` and every CLI command (in-process and as a real subprocess) without
``--trust-pickle``/``trust_pickle=True``; whatever the outcome (an error is fine), the marker
must not exist afterwards.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import pickle
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import persistdict
from persistdict import migrate
from persistdict.cli import main
from tests.helpers import subprocess_env

SRC = Path(__file__).resolve().parents[2] / "src" / "persistdict"


class _Opens:
    """Unpickling this calls ``open(path, "w")``: the marker file appears."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.path, "w"))


def payload(marker: Path, protocol: int, wrap: bool = False) -> bytes:
    obj: Any = _Opens(str(marker))
    return pickle.dumps({"k": obj} if wrap else obj, protocol=protocol)


# Crafted sources: each builder writes one into ``folder`` and returns its path.

PROTOCOLS = st.integers(min_value=0, max_value=pickle.HIGHEST_PROTOCOL)


@st.composite
def sqlitedict_files(draw: st.DrawFn) -> Crafted:
    table = draw(st.sampled_from(["unnamed", "items", "t"]))
    name = draw(st.sampled_from(["src.sqlite", "src.db", "src.bin"]))
    protocol = draw(PROTOCOLS)
    first_json = draw(st.booleans())

    def build(folder: Path, marker: Path) -> Path:
        path = folder / name
        cx = sqlite3.connect(path)
        cx.execute(f'CREATE TABLE "{table}" (key TEXT PRIMARY KEY, value BLOB)')
        if first_json:
            cx.execute(f'INSERT INTO "{table}" VALUES (?, ?)', ("a", '"plain"'))
        cx.execute(f'INSERT INTO "{table}" VALUES (?, ?)', ("b", payload(marker, protocol)))
        cx.commit()
        cx.close()
        return path

    return Crafted(build, ("auto", "sqlitedict", "persistdict-0", "sqlite"))


_DISKCACHE_SCHEMA = (
    "CREATE TABLE Settings (key TEXT NOT NULL UNIQUE, value)",
    "CREATE TABLE Cache (rowid INTEGER PRIMARY KEY, key BLOB, raw INTEGER, store_time REAL, "
    "expire_time REAL, access_time REAL, access_count INTEGER DEFAULT 0, tag BLOB, "
    "size INTEGER DEFAULT 0, mode INTEGER DEFAULT 0, filename TEXT, value BLOB)",
)
# What the raw column may hold in a crafted cache.db: diskcache writes 0 or 1 only.
RAW_FLAGS = st.one_of(
    st.sampled_from([None, "", b""]), st.sampled_from([0, 1, None, "", b"", "x", 2, 1.0, "1"])
)
MODES = st.one_of(st.sampled_from([1, 2, 3]), st.sampled_from([4, None, "4", 4.0, 0, 5]))


def diskcache_folder(
    folder: Path,
    rows: list[tuple[Any, Any, Any, str | None, bytes | None]],
    files: dict[str, bytes] | None = None,
) -> Path:
    """A diskcache folder ``folder/cache`` whose Cache table holds ``rows`` of (key, raw,
    mode, filename, value), and beside it the value ``files``; returns the folder."""
    cache = folder / "cache"
    cache.mkdir()
    for name, data in (files or {}).items():
        (cache / name).write_bytes(data)
    cx = sqlite3.connect(cache / "cache.db")
    for statement in _DISKCACHE_SCHEMA:
        cx.execute(statement)
    cx.executemany(
        "INSERT INTO Cache (key, raw, mode, filename, value) VALUES (?, ?, ?, ?, ?)", rows
    )
    cx.commit()
    cx.close()
    return cache


@st.composite
def diskcache_folders(draw: st.DrawFn) -> Crafted:
    rows = draw(
        st.lists(
            st.tuples(RAW_FLAGS, MODES, st.booleans(), st.booleans(), PROTOCOLS),
            min_size=1,
            max_size=2,
        )
    )
    give_db = draw(st.booleans())

    def build(folder: Path, marker: Path) -> Path:
        cells: list[tuple[Any, Any, Any, str | None, bytes | None]] = []
        files = {}
        for i, (raw, mode, pickled_key, in_file, protocol) in enumerate(rows):
            key: Any = payload(marker, protocol) if pickled_key else f"k{i}"
            if in_file:
                files[f"v{i}.val"] = payload(marker, protocol)
                cells.append((key, raw, mode, f"v{i}.val", None))
            else:
                cells.append((key, raw, mode, None, payload(marker, protocol)))
        cache = diskcache_folder(folder, cells, files)
        return cache / "cache.db" if give_db else cache

    return Crafted(build, ("auto", "diskcache"))


@st.composite
def shelve_files(draw: st.DrawFn) -> Crafted:
    name = draw(st.sampled_from(["shelf", "shelf.db", "shelf.dat"]))
    module = draw(st.sampled_from([m for m in ("dbm.dumb", "dbm.gnu", "dbm.ndbm") if _has(m)]))
    protocol = draw(PROTOCOLS)

    def build(folder: Path, marker: Path) -> Path:
        path = folder / name
        db: Any = __import__(module, fromlist=["open"]).open(str(path), "c")
        try:
            db[b"k"] = payload(marker, protocol)
        finally:
            db.close()
        return path

    return Crafted(build, ("auto", "shelve", "dbm"))


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


@st.composite
def pickle_files(draw: st.DrawFn) -> Crafted:
    name = draw(
        st.sampled_from(["state.pkl", "state", "state.json", "state.csv", "AppState.txt", "s.db"])
    )
    protocol = draw(PROTOCOLS)

    def build(folder: Path, marker: Path) -> Path:
        path = folder / name
        path.write_bytes(payload(marker, protocol, wrap=True))
        return path

    return Crafted(build, ("auto", "permadict", "pickle", "json", "csv"))


SOURCES = st.one_of(sqlitedict_files(), diskcache_folders(), shelve_files(), pickle_files())

KINDS = ["auto", *migrate.KINDS, *persistdict.available_backends()]
FLAGS = st.lists(
    st.sampled_from(
        [
            ("--format", "pickle"),
            ("--backend", "pickle"),
            ("--serializer", "pickle"),
            ("--backend", "dbm"),
            ("--backend", "sqlite"),
            ("--format", "json"),
        ]
    ),
    max_size=2,
    unique_by=lambda pair: pair[0],
)
COMMANDS = st.sampled_from(
    ["get", "set", "del", "keys", "dump", "load", "convert", "check", "info"]
)


def command_line(data: st.DataObject, source: Crafted, src: Path, folder: Path) -> list[str]:
    """One CLI command line reading ``src`` without --trust-pickle, drawn from ``data``."""
    command = data.draw(COMMANDS)
    flags = [part for pair in data.draw(FLAGS) for part in pair]
    if command == "convert":
        kind = data.draw(st.one_of(st.sampled_from(source.kinds), st.sampled_from(KINDS)))
        src_format = data.draw(st.sampled_from([None, "pickle", "json", "csv"]))
        dst = folder / data.draw(st.sampled_from(["out.db", "out.json", "out.pkl"]))
        extra = ["--from", kind] + (["--src-format", src_format] if src_format else [])
        return [command, str(src), str(dst), *extra, *flags]
    if command in ("get", "del"):
        return [command, str(src), "k", *flags]
    if command == "set":
        return [command, str(src), "k", "1", *flags]
    return [command, str(src), *flags]


@dataclass(frozen=True)
class Crafted:
    """A crafted source: ``build(folder, marker)`` writes it and returns its path; ``kinds``
    are the ``--from`` kinds that read it for real (drawn more often than the others)."""

    build: Callable[[Path, Path], Path]
    kinds: tuple[str, ...]


@contextlib.contextmanager
def crafted(build: Callable[[Path, Path], Path]) -> Iterator[tuple[Path, Path, Path]]:
    """A fresh folder holding the source ``build`` writes; yields (source, marker, folder)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        marker = folder / "MARKER-code-ran"
        yield build(folder, marker), marker, folder
        assert not marker.exists(), "a pickle was loaded without trust"


def run_in_process(argv: list[str]) -> int:
    stdin = io.TextIOWrapper(io.BytesIO(b'{"k": 1}'))
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    sys.stdin = stdin
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                return main(argv)
            except SystemExit as exc:  # argparse refusing an option combination
                return int(exc.code or 0)
    finally:
        sys.stdin = saved


EXAMPLES = int(os.environ.get("PERSISTDICT_PICKLE_EXAMPLES", "150"))
SUBPROCESS_EXAMPLES = int(os.environ.get("PERSISTDICT_PICKLE_SUBPROCESS_EXAMPLES", "30"))


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


@_settings(EXAMPLES)
@given(source=SOURCES, flag=st.sampled_from(["r", "w", "c"]))
def test_open_never_unpickles_a_crafted_file(source: Crafted, flag: str) -> None:
    with crafted(source.build) as (src, _, _), contextlib.suppress(Exception):
        d = persistdict.open(src, flag)
        try:
            dict(d.items())
        finally:
            d.close()


@_settings(EXAMPLES)
@given(source=SOURCES, data=st.data())
def test_migrate_copy_never_unpickles_without_trust(source: Crafted, data: st.DataObject) -> None:
    kind = data.draw(st.one_of(st.sampled_from(source.kinds), st.sampled_from(KINDS)))
    src_format = data.draw(st.sampled_from([None, "pickle", "json", "csv"]))
    dst_name = data.draw(st.sampled_from(["out.db", "out.json", "out.pkl"]))
    with crafted(source.build) as (src, _, folder), contextlib.suppress(Exception):
        migrate.copy(src, folder / dst_name, source=kind, src_format=src_format)


@_settings(EXAMPLES)
@given(source=SOURCES, data=st.data())
def test_no_cli_command_unpickles_without_trust_pickle(
    source: Crafted, data: st.DataObject
) -> None:
    with crafted(source.build) as (src, _, folder):
        run_in_process(command_line(data, source, src, folder))


@_settings(SUBPROCESS_EXAMPLES)
@given(source=SOURCES, data=st.data(), debug=st.booleans())
def test_no_cli_command_unpickles_without_trust_pickle_in_a_real_process(
    source: Crafted, data: st.DataObject, debug: bool
) -> None:
    with crafted(source.build) as (src, _, folder):
        argv = command_line(data, source, src, folder)
        subprocess.run(
            [sys.executable, "-m", "persistdict", *(["--debug"] if debug else []), *argv],
            input='{"k": 1}',
            capture_output=True,
            text=True,
            timeout=60,
            env=subprocess_env(),
            cwd=folder,
        )


# The regressions the issue reported, one by one.


@pytest.mark.parametrize("raw", [None, "", b""], ids=["NULL", "empty-text", "empty-blob"])
def test_diskcache_raw_flag_that_is_not_0_or_1_is_not_unpickled(tmp_path: Path, raw: Any) -> None:
    marker = tmp_path / "marker"
    cache = diskcache_folder(tmp_path, [(payload(marker, 4), raw, 1, None, b"v")])
    with pytest.raises(migrate.UntrustedPickleError, match="pickled key"):
        migrate.copy(cache, tmp_path / "out.db")
    assert not marker.exists()
    assert not (tmp_path / "out.db").exists()


@pytest.mark.parametrize("command", ["get", "keys", "dump", "check", "info", "set", "del"])
@pytest.mark.parametrize("option", ["--format", "--backend"])
def test_cli_pickle_format_needs_trust_pickle(tmp_path: Path, command: str, option: str) -> None:
    marker = tmp_path / "marker"
    src = tmp_path / "state.pkl"
    src.write_bytes(payload(marker, pickle.DEFAULT_PROTOCOL, wrap=True))
    argv = [command, str(src), *(["k"] if command in ("get", "set", "del") else [])]
    argv += ["1"] if command == "set" else []
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([*argv, option, "pickle"])
    assert not marker.exists()
    assert code == 3
    assert "--trust-pickle" in err.getvalue()
    assert "runs code" in err.getvalue()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        main([*argv, option, "pickle", "--trust-pickle"])
    assert marker.exists()  # the opt-in is what lets it through


def test_cli_pickle_serializer_needs_trust_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    src = tmp_path / "data.db"
    with persistdict.open(src, serializer="pickle") as d:
        d["k"] = _Opens(str(marker))
    marker.unlink(missing_ok=True)  # in case storing it loaded it back
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main(["dump", str(src), "--serializer", "pickle"]) == 3
    assert not marker.exists()
    assert "--trust-pickle" in err.getvalue()


def test_unpickling_lives_in_one_function() -> None:
    """Only serializers.unpickle calls into pickle's loaders; everything else goes through it,
    so its trust check can't be bypassed."""
    loaders = {
        "pickle": {"load", "loads", "Unpickler"},
        "_pickle": {"load", "loads", "Unpickler"},
        "shelve": {"open", "Shelf", "DbfilenameShelf", "BsdDbShelf"},
        "marshal": {"load", "loads"},
    }
    found = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.attr in loaders.get(node.value.id, ())
                ):
                    found.append(f"{path.relative_to(SRC)}:{func.name}")
        by_name = [
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
            if alias.name in loaders.get(node.module or "", ())
        ]
        assert by_name == [], f"{path} imports a pickle loader by name"
    assert found == ["serializers.py:unpickle"]


def test_unpickle_refuses_without_trust() -> None:
    from persistdict.serializers import unpickle

    data = pickle.dumps({"a": 1})
    with pytest.raises(persistdict.errors.UntrustedPickleError, match="runs code"):
        unpickle(data, trusted=False, what="test data")
    assert unpickle(data, trusted=True, what="test data") == {"a": 1}


def _trusted_sources(folder: Path, marker: Path) -> dict[str, Path]:
    """One source of each crafted kind, built as the strategies build them."""
    table = folder / "t.sqlite"
    cx = sqlite3.connect(table)
    cx.execute('CREATE TABLE "unnamed" (key TEXT PRIMARY KEY, value BLOB)')
    cx.execute('INSERT INTO "unnamed" VALUES (?, ?)', ("b", payload(marker, 4)))
    cx.commit()
    cx.close()
    cache = diskcache_folder(folder, [("k", 1, 4, None, payload(marker, 4))])
    shelf = folder / "shelf"
    db: Any = __import__("dbm.dumb", fromlist=["open"]).open(str(shelf), "c")
    db[b"k"] = payload(marker, 4)
    db.close()
    state = folder / "state.pkl"
    state.write_bytes(payload(marker, 4, wrap=True))
    return {"sqlitedict": table, "diskcache": cache, "shelve": shelf, "permadict": state}


@pytest.mark.parametrize("kind", ["sqlitedict", "diskcache", "shelve", "permadict"])
def test_the_crafted_sources_do_run_code_once_trusted(tmp_path: Path, kind: str) -> None:
    """The other tests' files are real attacks: with the opt-in, the marker appears."""
    marker = tmp_path / "marker"
    src = _trusted_sources(tmp_path, marker)[kind]
    assert not marker.exists()
    with contextlib.suppress(Exception):
        migrate.copy(src, tmp_path / "out.json", source=kind, trust_pickle=True)
    assert marker.exists()
