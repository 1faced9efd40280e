"""persistdict.migrate between persistdict backends, and what happens at the destination:
refusals, replace or merge, interruption, progress."""

from __future__ import annotations

import json
import shelve
import sqlite3
from pathlib import Path

import pytest

import persistdict
from persistdict import migrate
from persistdict.migrate import DestinationExistsError, UnstorableValueError, UntrustedPickleError
from tests.migrate.sources import (
    DATA,
    assert_no_destination,
    make_shelve,
    make_sqlitedict,
    read_all,
    snapshot,
)


def test_copy_between_backends_keeps_every_value(tmp_path: Path) -> None:
    with persistdict.open(tmp_path / "a.json") as d:
        d.update(DATA)
    migrate.copy(tmp_path / "a.json", tmp_path / "b.db", dst_table="t")
    migrate.copy(f"sqlite:///{tmp_path / 'b.db'}", tmp_path / "c.json", src_table="t")
    assert read_all(tmp_path / "b.db", table="t") == DATA
    assert read_all(tmp_path / "c.json") == DATA


def test_sqlite_source_is_read_without_leaving_files_beside_it(tmp_path: Path) -> None:
    src = tmp_path / "src" / "a.db"
    src.parent.mkdir()
    with persistdict.open(src) as d:
        d.update(DATA)
    with persistdict.open(src, table="pickled", serializer="pickle") as d:
        d["tags"] = {"x"}
    before = snapshot(src.parent)
    migrate.copy(src, tmp_path / "b.json")
    assert read_all(tmp_path / "b.json") == DATA
    with pytest.raises(UntrustedPickleError, match="table 'pickled'"):
        migrate.copy(src, tmp_path / "c.db", src_table="pickled")
    migrate.copy(
        src, tmp_path / "c.db", src_table="pickled", trust_pickle=True, serializer="pickle"
    )
    assert read_all(tmp_path / "c.db", serializer="pickle") == {"tags": {"x"}}
    assert snapshot(src.parent) == before


def test_a_table_is_not_copied_into_its_own_file(tmp_path: Path) -> None:
    path = tmp_path / "app.sqlite"
    make_sqlitedict(path, {"a": 1})
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"same file.*copy into another file"):
        migrate.copy(path, path, trust_pickle=True)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.sqlite"]


def test_missing_source_table_is_an_error_not_an_empty_copy(tmp_path: Path) -> None:
    with persistdict.open(tmp_path / "a.db", table="users") as d:
        d["x"] = 1
    with pytest.raises(ValueError, match=r"no key/value table 'items'.*users.*--src-table"):
        migrate.copy(tmp_path / "a.db", tmp_path / "b.json")
    assert not (tmp_path / "b.json").exists()


def test_set_into_json_stops_naming_the_key_unless_skip_or_str(tmp_path: Path) -> None:
    src = tmp_path / "state"
    make_shelve(src, {"good": 1, "tags": {"a", "b"}, "blob": b"\xff"})
    with pytest.raises(UnstorableValueError, match=r"key 'tags'|key 'blob'") as info:
        migrate.copy(src, tmp_path / "x.json", trust_pickle=True)
    assert "--on-error skip" in str(info.value)
    assert not (tmp_path / "x.json").exists()

    summary = migrate.copy(src, tmp_path / "x.json", trust_pickle=True, on_error="skip")
    assert read_all(tmp_path / "x.json") == {"good": 1}
    assert sorted(key for key, _ in summary.skipped) == ["'blob'", "'tags'"]
    assert "skipped 2:" in summary.line()

    summary = migrate.copy(src, tmp_path / "y.db", trust_pickle=True, on_error="str")
    got = read_all(tmp_path / "y.db")
    assert got["good"] == 1
    assert got["tags"] in ("{'a', 'b'}", "{'b', 'a'}")
    assert got["blob"] == "b'\\xff'"
    assert "stored as text 2:" in summary.line()


def test_existing_destination_is_refused_then_replaced_or_merged(tmp_path: Path) -> None:
    src = tmp_path / "src.json"
    src.write_text('{"a": 1, "b": 2}')
    dst = tmp_path / "dst.json"
    dst.write_text('{"old": true, "a": 0}')
    before = dst.read_bytes()
    with pytest.raises(DestinationExistsError, match=r"already holds 2 keys.*--replace.*--merge"):
        migrate.copy(src, dst)
    assert dst.read_bytes() == before
    migrate.copy(src, dst, existing="merge")
    assert read_all(dst) == {"old": True, "a": 1, "b": 2}
    migrate.copy(src, dst, existing="replace")
    assert read_all(dst) == {"a": 1, "b": 2}


def test_failed_copy_into_existing_sqlite_file_changes_nothing(tmp_path: Path) -> None:
    dst = tmp_path / "app.db"
    with persistdict.open(dst, table="users") as d:
        d["ada"] = {"admin": True}
    src = tmp_path / "state"
    make_shelve(src, {**{f"k{i}": i for i in range(1500)}, "zz bad": {1}})
    with pytest.raises(UnstorableValueError):
        migrate.copy(src, dst, trust_pickle=True)
    cx = sqlite3.connect(dst)
    tables = [row[0] for row in cx.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    cx.close()
    assert tables == ["users"], "the new table should be gone after the failed copy"
    assert read_all(dst, table="users") == {"ada": {"admin": True}}


def test_interrupted_copy_leaves_no_destination(tmp_path: Path, dst: Path) -> None:
    src = tmp_path / "old.sqlite"
    make_sqlitedict(src, DATA)

    def interrupt(done: int, total: int | None, seconds: float) -> None:
        assert total == len(DATA)
        if done >= 1000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        migrate.copy(src, dst, trust_pickle=True, progress=interrupt)
    assert_no_destination(dst)


def test_progress_reports_counts(tmp_path: Path) -> None:
    src = tmp_path / "old.sqlite"
    make_sqlitedict(src, DATA)
    seen: list[int] = []
    migrate.copy(src, tmp_path / "n.db", trust_pickle=True, progress=lambda n, t, s: seen.append(n))
    assert seen == sorted(seen)
    assert seen[-1] == len(DATA)
    assert len(seen) >= 3


def test_same_file_and_bad_arguments_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text("{}")
    with pytest.raises(ValueError, match="source and destination are the same file"):
        migrate.copy(path, path)
    with pytest.raises(ValueError, match="on_error must be one of"):
        migrate.copy(path, tmp_path / "b.json", on_error="ignore")
    with pytest.raises(ValueError, match=r"unknown source kind 'zodb'.*sqlitedict"):
        migrate.copy(path, tmp_path / "b.json", source="zodb")


def test_unknown_file_asks_for_from(tmp_path: Path) -> None:
    src = tmp_path / "AppState.txt"
    src.write_bytes(b"\x00\x01 not a known format")
    with pytest.raises(ValueError, match=r"can't tell which backend.*--from.*sqlitedict"):
        migrate.copy(src, tmp_path / "b.json")
    assert not (tmp_path / "b.json").exists()


def test_a_file_that_only_looks_native_says_to_name_its_kind(tmp_path: Path) -> None:
    src = tmp_path / "state"
    with shelve.open(str(src), protocol=0) as sh:  # protocol 0 pickles don't look like pickles
        sh["a"] = [1]
    assert migrate.detect_source(str(src)) == "persistdict"
    with pytest.raises(persistdict.CorruptError, match=r"can't be decoded.*kind with --from"):
        migrate.copy(src, tmp_path / "b.json")
    assert not (tmp_path / "b.json").exists()
    migrate.copy(src, tmp_path / "b.json", source="shelve", trust_pickle=True)
    assert read_all(tmp_path / "b.json") == {"a": [1]}


def test_destination_folder_must_exist(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"a": 1}')
    with pytest.raises(FileNotFoundError, match="No such folder"):
        migrate.copy(tmp_path / "a.json", tmp_path / "nope" / "b.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_dbm_destination_built_whole(tmp_path: Path) -> None:
    src = tmp_path / "a.json"
    src.write_text(json.dumps(DATA))
    migrate.copy(src, tmp_path / "out", dst_backend="dbm")
    assert read_all(tmp_path / "out", backend="dbm") == DATA
    assert not [p for p in tmp_path.iterdir() if "persistdict-convert" in p.name]
