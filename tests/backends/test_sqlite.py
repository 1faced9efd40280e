from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict import PersistDict
from persistdict.testing import MappingConformance


class TestSqlite(MappingConformance):
    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        return persistdict.open(folder / "data.db", **options)


class TestSqliteBatched(MappingConformance):
    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        return persistdict.open(folder / "data.db", table="batched", commit_every=7, **options)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Connection.setlimit() is Python 3.11+")
def test_a_key_or_value_beyond_sqlites_length_limit_is_a_value_error(tmp_path: Path) -> None:
    # SQLite's limit is 1e9 bytes; lowering it on this connection tests the same path fast.
    with persistdict.open(tmp_path / "d.db") as d:
        d["a"] = 1
        d.backend._conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1000)  # type: ignore[attr-defined]
        for key, value in (("big", "x" * 2000), ("k" * 2000, 1)):
            with pytest.raises(ValueError, match=f"can't store key '{key[:10]}.*length limit"):
                d[key] = value
        with pytest.raises(ValueError, match="length limit"):
            d.update({"u1": 1, "u2": "y" * 5000})
        assert dict(d) == {"a": 1}
    with persistdict.open(tmp_path / "d.db", "r") as d:
        assert dict(d) == {"a": 1}
