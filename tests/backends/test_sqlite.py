from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict import PersistDict
from persistdict.backends.sqlite import SqliteBackend
from persistdict.testing import MappingConformance


def read_all(target: Path, **options: Any) -> dict[str, Any]:
    with persistdict.open(target, "r", **options) as d:
        return dict(d.items())


class TestSqlite(MappingConformance):
    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        return persistdict.open(folder / "data.db", **options)


class TestSqliteBatched(MappingConformance):
    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        return persistdict.open(folder / "data.db", table="batched", commit_every=7, **options)


# Table names and paths ------------------------------------------------------------------------


@pytest.mark.parametrize("table", ["sqlite_master", "sqlite_items", "SQLITE_x", "Sqlite_"])
def test_table_names_reserved_by_sqlite_are_refused_before_any_io(
    tmp_path: Path, table: str
) -> None:
    target = tmp_path / "data.db"
    with pytest.raises(ValueError, match=f"table name {table!r}.*reserved"):
        persistdict.open(target, table=table)
    with pytest.raises(ValueError, match="reserved"):
        SqliteBackend(target, table=table)
    assert list(tmp_path.iterdir()) == []


def test_a_name_that_only_contains_sqlite_is_a_table_like_any_other(tmp_path: Path) -> None:
    with persistdict.open(tmp_path / "data.db", table="my_sqlite_stuff") as d:
        d["k"] = 1
    assert read_all(tmp_path / "data.db", table="my_sqlite_stuff") == {"k": 1}


@pytest.mark.parametrize("name", ["report%41.db", "a%2fb.db", "what?.db", "x#1.db", "100%.db"])
def test_read_only_open_finds_a_path_with_uri_characters(tmp_path: Path, name: str) -> None:
    # Unescaped in a file: URI, "report%41.db" names "reportA.db": that file exists too,
    # holding something else, so reading the wrong file shows.
    decoy = urllib.parse.unquote(name)
    if decoy != name and "/" not in decoy:
        with persistdict.open(tmp_path / decoy) as other:
            other["which"] = "the wrong file"
    with persistdict.open(tmp_path / name) as d:
        d["which"] = name
    with persistdict.open(tmp_path / name, "r") as d:
        assert dict(d.items()) == {"which": name}
        assert d.backend.check() == []
    names = {p.name for p in tmp_path.iterdir()}
    assert names <= {name, decoy, name + "-wal", name + "-shm"}
