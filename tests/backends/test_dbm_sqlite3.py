"""dbm.sqlite3 files, Python 3.13's default dbm: a SQLite file (named exactly as given)
holding one table ``Dict``. They must be told apart from the sqlite backend's files, shared
by threads, and read and written on every Python. The schema below is dbm.sqlite3's own, so
these tests make the same file on 3.10-3.12.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict import PersistDict
from persistdict.detect import detect_backend
from persistdict.testing import MappingConformance

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


def test_a_dbm_sqlite3_file_is_read_and_written_on_every_python(tmp_path: Path) -> None:
    path = tmp_path / "shelf"
    make_dbm_sqlite3(path, {b"a": b'"1"'})
    with persistdict.open(path) as d:  # detected, not named
        assert dict(d) == {"a": "1"}
        d["b"] = [2]
        del d["a"]
    # Still the format dbm.sqlite3 reads: BLOB keys and values in its one table.
    cx = sqlite3.connect(path)
    rows = cx.execute("SELECT typeof(key), key, typeof(value), value FROM Dict").fetchall()
    cx.close()
    assert rows == [("blob", b"b", "blob", b"[2]")]
    if sys.version_info >= (3, 13):
        import dbm.sqlite3

        with dbm.sqlite3.open(str(path)) as db:
            assert db[b"b"] == b"[2]"


def test_a_dbm_sqlite3_dict_is_shared_by_threads(tmp_path: Path) -> None:
    # dbm.sqlite3's own connection refuses use from a thread other than its opener's.
    make_dbm_sqlite3(tmp_path / "shelf", {})
    with persistdict.open(tmp_path / "shelf") as d:
        workers = [
            threading.Thread(target=lambda n=n: d.update({f"{n}-{i}": i for i in range(50)}))
            for n in range(4)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert len(d) == 200
        assert d["3-49"] == 49


class TestDbmSqlite3File(MappingConformance):
    """The whole contract on a dbm.sqlite3 file, on every Python (3.13+ makes one by default,
    which TestDbm covers there)."""

    backend_name = "dbm"

    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        if not (folder / "shelf").exists():
            make_dbm_sqlite3(folder / "shelf", {})
        return persistdict.open(folder / "shelf", backend="dbm", **options)

    # Not collected here: open_dict makes the file before opening it; TestDbm opens a missing one.
    test_missing_target_with_flag_r_or_w = None
