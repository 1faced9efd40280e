from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict import CorruptError, PersistDict
from persistdict.detect import detect_backend
from persistdict.testing import MappingConformance


class TestDbm(MappingConformance):
    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        return persistdict.open(folder / "shelf", backend="dbm", **options)


# Python 3.13's default dbm is dbm.sqlite3: a SQLite file (named exactly as given) holding one
# table ``Dict``. It must be told apart from the sqlite backend's files, on every Python.
# The schema below is dbm.sqlite3's own, so these tests make the same file on 3.10-3.12.
_DBM_SQLITE3_TABLE = "CREATE TABLE Dict (key BLOB UNIQUE NOT NULL, value BLOB NOT NULL)"


def make_dbm_sqlite3(path: Path, data: dict[bytes, bytes]) -> None:
    cx = sqlite3.connect(path)
    with cx:
        cx.execute("PRAGMA journal_mode = wal")
        cx.execute(_DBM_SQLITE3_TABLE)
        cx.executemany("INSERT INTO Dict VALUES (?, ?)", data.items())
    cx.close()


def test_a_dbm_sqlite3_file_is_detected_as_dbm_not_sqlite(tmp_path: Path) -> None:
    for name in ("shelf", "shelf.db"):
        make_dbm_sqlite3(tmp_path / name, {b"a": b"1"})
        assert detect_backend(str(tmp_path / name)) == "dbm"
    with persistdict.open(tmp_path / "app.db", table="Dict") as d:
        d["x"] = 1  # the sqlite backend's own table named Dict: a TEXT key, so not dbm
    assert detect_backend(str(tmp_path / "app.db")) == "sqlite"


@pytest.mark.skipif(sys.version_info < (3, 13), reason="dbm.sqlite3 is new in Python 3.13")
def test_dbm_made_on_3_13_reopens_without_naming_the_backend(tmp_path: Path) -> None:
    with persistdict.open(tmp_path / "shelf", backend="dbm") as d:
        d["k"] = {"v": 1}
    assert (tmp_path / "shelf").read_bytes().startswith(b"SQLite format 3\x00")
    with persistdict.open(tmp_path / "shelf") as d:
        assert dict(d) == {"k": {"v": 1}}
        d["k2"] = 2
    with persistdict.open(tmp_path / "shelf", "r") as d:
        assert dict(d) == {"k": {"v": 1}, "k2": 2}


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="3.13+ reads dbm.sqlite3")
def test_dbm_sqlite3_file_on_an_older_python_says_which_python_reads_it(tmp_path: Path) -> None:
    make_dbm_sqlite3(tmp_path / "shelf", {b"a": b'"1"'})
    before = (tmp_path / "shelf").read_bytes()
    with pytest.raises(CorruptError, match=r"'.*shelf' is a dbm.sqlite3 database.*Python 3.13"):
        persistdict.open(tmp_path / "shelf")
    assert (tmp_path / "shelf").read_bytes() == before
