"""persistdict.migrate from shelve files (the dbm of any Python, trust, truncation).
Sources are made by shelve itself and compared key by key."""

from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path

import pytest

import persistdict
from persistdict import migrate
from persistdict.migrate import UntrustedPickleError
from tests.migrate.sources import DATA, assert_no_destination, make_shelve, read_all, snapshot


def test_shelve_round_trip(tmp_path: Path, dst: Path) -> None:
    src = tmp_path / "state"
    make_shelve(src, DATA)
    before = snapshot(tmp_path)
    assert migrate.detect_source(str(src)) == "shelve"
    summary = migrate.copy(src, dst, trust_pickle=True)
    assert read_all(dst) == DATA
    assert summary.source.startswith("shelve ")
    assert snapshot(tmp_path) == before


def test_shelve_made_by_python_3_13_imports_on_any_python(tmp_path: Path, dst: Path) -> None:
    # 3.13's shelve writes dbm.sqlite3: a SQLite file with one table Dict (its schema here).
    src = tmp_path / "state"
    cx = sqlite3.connect(src)
    with cx:
        cx.execute("PRAGMA journal_mode = wal")
        cx.execute("CREATE TABLE Dict (key BLOB UNIQUE NOT NULL, value BLOB NOT NULL)")
        cx.executemany(
            "INSERT INTO Dict VALUES (?, ?)",
            [(k.encode(), pickle.dumps(v)) for k, v in DATA.items()],
        )
    cx.close()
    before = snapshot(tmp_path)
    assert migrate.detect_source(str(src)) == "shelve"
    summary = migrate.copy(src, dst, trust_pickle=True)
    assert read_all(dst) == DATA
    assert summary.source.startswith("shelve ")
    assert snapshot(tmp_path) == before  # read without leaving -wal/-shm beside it


def test_shelve_without_trust_is_refused(tmp_path: Path, dst: Path) -> None:
    src = tmp_path / "state"
    make_shelve(src, {"a": 1})
    with pytest.raises(UntrustedPickleError, match="shelve stores every value as a pickle"):
        migrate.copy(src, dst, source="shelve")
    assert_no_destination(dst)


def test_truncated_shelve_names_the_key(tmp_path: Path, dst: Path) -> None:
    src = tmp_path / "state"
    make_shelve(src, {"only": list(range(1000))})
    data_files = [p for p in tmp_path.iterdir() if p.is_file() and p.suffix != ".dir"]
    data_file = max(data_files, key=lambda p: p.stat().st_size)
    raw = data_file.read_bytes()
    data_file.write_bytes(raw[: len(raw) // 2])
    # dbm.sqlite3 (3.13+) finds the damage when the file opens, the older dbms at the value.
    named = "shelve file .*state.*malformed" if raw.startswith(b"SQLite") else "key 'only'"
    with pytest.raises(persistdict.CorruptError, match=named):
        migrate.copy(src, dst, source="shelve", trust_pickle=True)
    assert_no_destination(dst)
