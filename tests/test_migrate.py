"""persistdict.migrate: sources built with the real libraries, compared key by key after import."""

from __future__ import annotations

import hashlib
import json
import pickle
import shelve
import sqlite3
import time
from pathlib import Path
from typing import Any

import diskcache
import pytest
import sqlitedict

import persistdict
from persistdict import migrate
from persistdict.migrate import (
    DestinationExistsError,
    UnstorableValueError,
    UntrustedPickleError,
)

# JSON-faithful values of every shape, and enough keys to span several write batches.
DATA: dict[str, Any] = {
    "cfg": {"root": "/srv", "n": [1, 2.5, None, True, False]},
    "unicode ключ ✓": "värde",
    "empty dict": {},
    "empty list": [],
    "nested": {"a": {"b": {"c": [1, {"d": "e"}]}}},
    "int": -42,
    "float": 1.5e300,
    "text": "line one\nline two",
    "": "empty key",
    **{f"k{i:05d}": {"i": i, "s": "x" * (i % 7)} for i in range(2500)},
}


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with a digest of its bytes (the destination folder ``out``
    left aside): the source must not change, nor gain files."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.relative_to(folder).parts[0] != "out":
            found[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def read_all(target: Path, **options: Any) -> dict[str, Any]:
    with persistdict.open(target, "r", **options) as d:
        return dict(d.items())


@pytest.fixture(params=["db", "json"])
def dst(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A destination of each kind the issue names: a SQLite file and a JSON file."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder / f"imported.{request.param}"


def assert_no_destination(dst: Path) -> None:
    leftovers = sorted(p.name for p in dst.parent.iterdir())
    assert leftovers == [], f"a failed import left {leftovers}"


# sqlitedict ----------------------------------------------------------------------------------


def make_sqlitedict(path: Path, data: dict[str, Any], **options: Any) -> None:
    with sqlitedict.SqliteDict(str(path), **options) as d:
        for key, value in data.items():
            d[key] = value
        d.commit()


def test_sqlitedict_pickled_values_round_trip(tmp_path: Path, dst: Path) -> None:
    src = tmp_path / "old.sqlite"
    make_sqlitedict(src, DATA)
    before = snapshot(tmp_path)
    summary = migrate.copy(src, dst, source="sqlitedict", trust_pickle=True)
    assert read_all(dst) == DATA
    assert summary.copied == len(DATA)
    assert summary.skipped == []
    assert summary.as_text == []
    assert snapshot(tmp_path) == before


def test_sqlitedict_is_detected_and_refused_without_trust(tmp_path: Path, dst: Path) -> None:
    src = tmp_path / "old.sqlite"
    make_sqlitedict(src, {"a": {1, 2}})
    assert migrate.detect_source(str(src)) == "sqlitedict"
    with pytest.raises(UntrustedPickleError) as info:
        migrate.copy(src, dst)
    message = str(info.value)
    assert "its values are pickles" in message
    assert "runs code" in message
    assert "--trust-pickle" in message
    assert "trust_pickle=True" in message
    assert_no_destination(dst)


def test_sqlitedict_json_variant_any_table_needs_no_trust(tmp_path: Path, dst: Path) -> None:
    src = tmp_path / "old.sqlite"
    table = 'my "odd" settings'  # sqlitedict takes any table name
    make_sqlitedict(src, DATA, tablename=table, encode=json.dumps, decode=json.loads)
    make_sqlitedict(src, {"other": 1}, tablename="unrelated")
    assert migrate.detect_source(str(src), table) == "sqlitedict"
    summary = migrate.copy(src, dst, src_table=table)
    assert read_all(dst) == DATA
    assert summary.source == f"sqlitedict 'old.sqlite' table {table!r}".replace(
        "'old.sqlite'", repr(str(src))
    )


def test_sqlitedict_with_several_tables_asks_which(tmp_path: Path, dst: Path) -> None:
    src = tmp_path / "old.sqlite"
    make_sqlitedict(src, {"a": 1}, tablename="one", encode=json.dumps, decode=json.loads)
    make_sqlitedict(src, {"b": 2}, tablename="two", encode=json.dumps, decode=json.loads)
    with pytest.raises(ValueError, match=r"several key/value tables \(one, two\).*--src-table"):
        migrate.copy(src, dst, source="sqlitedict")
    with pytest.raises(ValueError, match="no key/value table 'three'"):
        migrate.copy(src, dst, source="sqlitedict", src_table="three")
    assert_no_destination(dst)


@pytest.mark.parametrize("keep", [3000, 0.5])
@pytest.mark.parametrize("source", ["sqlitedict", "auto"])
def test_truncated_sqlitedict_gives_clear_error_and_no_destination(
    tmp_path: Path, dst: Path, source: str, keep: float
) -> None:
    src = tmp_path / "old.sqlite"
    make_sqlitedict(src, DATA)
    raw = src.read_bytes()
    src.write_bytes(raw[: int(keep if keep > 1 else len(raw) * keep)])
    with pytest.raises(persistdict.CorruptError, match=r"old\.sqlite"):
        migrate.copy(src, dst, source=source, trust_pickle=True)
    assert_no_destination(dst)


# shelve --------------------------------------------------------------------------------------


def make_shelve(path: Path, data: dict[str, Any]) -> None:
    with shelve.open(str(path), "n") as sh:
        sh.update(data)


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


# diskcache -----------------------------------------------------------------------------------

BIG_TEXT = "long text " * 10_000  # past diskcache's 32 KiB: kept in a file of its own
BIG_DICT = {"rows": [{"n": i} for i in range(5000)]}  # a pickle in a file of its own


def make_index(folder: Path, data: dict[str, Any]) -> None:
    index = diskcache.Index(str(folder))
    index.update(data)
    index.cache.close()


def test_diskcache_index_round_trip_with_values_in_files(tmp_path: Path, dst: Path) -> None:
    src = tmp_path / "cache"
    data = {**DATA, "big text": BIG_TEXT, "big dict": BIG_DICT, "small": "s", "n": 7}
    make_index(src, data)
    assert any(p.suffix == ".val" for p in src.rglob("*")), "values should live in files too"
    before = snapshot(src)
    assert migrate.detect_source(str(src)) == "diskcache"
    assert migrate.detect_source(str(src / "cache.db")) == "diskcache"
    summary = migrate.copy(src, dst, trust_pickle=True)
    assert read_all(dst) == data
    assert summary.copied == len(data)
    assert snapshot(src) == before


def test_diskcache_of_plain_values_needs_no_trust(tmp_path: Path, dst: Path) -> None:
    src = tmp_path / "cache"
    make_index(src, {"a": "text", "b": 1, "c": 2.5, "big": BIG_TEXT})
    migrate.copy(src, dst)
    assert read_all(dst) == {"a": "text", "b": 1, "c": 2.5, "big": BIG_TEXT}


def test_diskcache_leaves_expired_entries_out(tmp_path: Path, dst: Path) -> None:
    src = tmp_path / "cache"
    with diskcache.Cache(str(src)) as cache:
        cache.set("kept", "yes")
        cache.set("gone", "no", expire=0.01)
    time.sleep(0.05)
    summary = migrate.copy(src, dst)
    assert read_all(dst) == {"kept": "yes"}
    assert summary.left_out == 1
    assert "left out 1 expired diskcache entries" in summary.line()


def test_diskcache_non_str_keys_and_bytes_follow_on_error(tmp_path: Path) -> None:
    src = tmp_path / "cache"
    with diskcache.Cache(str(src)) as cache:
        cache.set("name", "ok")
        cache.set(5, "int key")
        cache.set("blob", b"caf\xc3\xa9")
        cache.set(b"raw", "bytes key")
    with pytest.raises(UnstorableValueError, match=r"key 5 .*keys must be str, not int"):
        migrate.copy(src, tmp_path / "a.json")
    assert not (tmp_path / "a.json").exists()

    skipped = migrate.copy(src, tmp_path / "b.json", on_error="skip")
    assert read_all(tmp_path / "b.json") == {"name": "ok"}
    assert sorted(key for key, _ in skipped.skipped) == ["'blob'", "5", "b'raw'"]

    as_text = migrate.copy(src, tmp_path / "c.json", on_error="str")
    assert read_all(tmp_path / "c.json") == {
        "name": "ok",
        "5": "int key",
        "blob": "café",
        "raw": "bytes key",
    }
    assert len(as_text.as_text) == 3


def test_truncated_diskcache_gives_clear_error_and_no_destination(
    tmp_path: Path, dst: Path
) -> None:
    src = tmp_path / "cache"
    make_index(src, DATA)
    db = src / "cache.db"
    raw = db.read_bytes()
    db.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(persistdict.CorruptError, match="cache"):
        migrate.copy(src, dst, source="diskcache", trust_pickle=True)
    assert_no_destination(dst)


def test_diskcache_value_file_missing_names_key_and_file(tmp_path: Path, dst: Path) -> None:
    src = tmp_path / "cache"
    make_index(src, {"big": BIG_TEXT})
    (value_file,) = src.rglob("*.val")
    value_file.unlink()
    with pytest.raises(persistdict.CorruptError, match=r"key 'big' lives in .*\.val"):
        migrate.copy(src, dst)
    assert_no_destination(dst)


# PermaDict and the original module ------------------------------------------------------------


def test_permadict_json_csv_and_pickle_files(tmp_path: Path) -> None:
    text_data = {"user": "ada", "theme": "dark", "empty": "", 'comma, quote"': "a,b\n"}
    (tmp_path / "AppState.txt").write_text(json.dumps(DATA), encoding="utf-8")
    (tmp_path / "State.csv.txt").write_text(
        "".join(
            f'"{k.replace(chr(34), 2 * chr(34))}","{v.replace(chr(34), 2 * chr(34))}"\n'
            for k, v in text_data.items()
        ),
        encoding="utf-8",
    )
    (tmp_path / "State.pkl.txt").write_bytes(pickle.dumps(DATA))

    migrate.copy(tmp_path / "AppState.txt", tmp_path / "a.db", source="permadict")
    assert read_all(tmp_path / "a.db") == DATA
    migrate.copy(tmp_path / "State.csv.txt", tmp_path / "b.json", source="permadict")
    assert read_all(tmp_path / "b.json") == text_data
    with pytest.raises(UntrustedPickleError, match="pickle"):
        migrate.copy(tmp_path / "State.pkl.txt", tmp_path / "c.json", source="permadict")
    assert not (tmp_path / "c.json").exists()
    migrate.copy(
        tmp_path / "State.pkl.txt", tmp_path / "c.json", source="permadict", trust_pickle=True
    )
    assert read_all(tmp_path / "c.json") == DATA


def test_permadict_csv_with_header_and_broken_files(tmp_path: Path, dst: Path) -> None:
    (tmp_path / "State.txt").write_text("key,value\r\nuser,ada\r\n", encoding="utf-8")
    migrate.copy(tmp_path / "State.txt", dst, source="permadict")
    assert read_all(dst) == {"user": "ada"}

    truncated = tmp_path / "Trunc.txt"
    truncated.write_bytes(pickle.dumps(DATA)[:-100])
    with pytest.raises(persistdict.CorruptError, match=r"Trunc\.txt"):
        migrate.copy(truncated, tmp_path / "out" / "t.json", source="permadict", trust_pickle=True)
    not_a_dict = tmp_path / "List.txt"
    not_a_dict.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(persistdict.CorruptError, match="not a dict"):
        migrate.copy(not_a_dict, tmp_path / "out" / "l.json", source="permadict", trust_pickle=True)
    half_json = tmp_path / "Half.txt"
    half_json.write_text(json.dumps(DATA)[:500], encoding="utf-8")
    with pytest.raises(persistdict.CorruptError, match=r"Half\.txt"):
        migrate.copy(half_json, tmp_path / "out" / "h.json", source="permadict")
    left = {p.name for p in (tmp_path / "out").iterdir()}
    assert not left & {"t.json", "l.json", "h.json"}
    assert not [name for name in left if "persistdict-convert" in name]


def test_persistdict0_double_encoded_json(tmp_path: Path, dst: Path) -> None:
    src = tmp_path / "state.json"
    src.write_text(json.dumps({k: json.dumps(v) for k, v in DATA.items()}), encoding="utf-8")
    migrate.copy(src, dst, source="persistdict-0")
    assert read_all(dst) == DATA


def test_persistdict0_example_from_the_issue(tmp_path: Path) -> None:
    src = tmp_path / "state.json"
    src.write_text('{"cfg": "{\\"root\\": \\"/srv\\"}"}', encoding="utf-8")
    migrate.copy(src, tmp_path / "new.json", source="persistdict-0")
    assert json.loads((tmp_path / "new.json").read_text()) == {"cfg": {"root": "/srv"}}


def test_a_double_encoded_file_copied_as_plain_json_gets_a_note(tmp_path: Path) -> None:
    src = tmp_path / "state.json"
    src.write_text('{"cfg": "{\\"root\\": \\"/srv\\"}", "n": "[1]"}', encoding="utf-8")
    summary = migrate.copy(src, tmp_path / "as_is.db")
    assert read_all(tmp_path / "as_is.db") == {"cfg": '{"root": "/srv"}', "n": "[1]"}
    (note,) = summary.notes
    assert "--from persistdict-0" in note
    plain = tmp_path / "plain.json"
    plain.write_text('{"cfg": "{\\"root\\": \\"/srv\\"}", "n": 1}', encoding="utf-8")
    assert migrate.copy(plain, tmp_path / "plain.db").notes == []


def test_persistdict0_refuses_a_file_that_is_not_double_encoded(tmp_path: Path) -> None:
    src = tmp_path / "state.json"
    src.write_text('{"ok": "1", "plain": {"root": "/srv"}}', encoding="utf-8")
    with pytest.raises(persistdict.CorruptError, match=r"key 'plain'.*not a persistdict-0 file"):
        migrate.copy(src, tmp_path / "new.json", source="persistdict-0")
    assert not (tmp_path / "new.json").exists()


def test_persistdict0_sqlite_table(tmp_path: Path, dst: Path) -> None:
    src = tmp_path / "old.db"
    cx = sqlite3.connect(src)
    cx.execute("CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    cx.executemany(
        "INSERT INTO config VALUES (?, ?)", [(k, json.dumps(v)) for k, v in DATA.items()]
    )
    cx.commit()
    cx.close()
    migrate.copy(src, dst, source="persistdict-0", src_table="config")
    assert read_all(dst) == DATA


def test_truncated_persistdict0_json(tmp_path: Path, dst: Path) -> None:
    src = tmp_path / "state.json"
    text = json.dumps({k: json.dumps(v) for k, v in DATA.items()})
    src.write_text(text[: len(text) // 2], encoding="utf-8")
    with pytest.raises(persistdict.CorruptError, match=r"state\.json.*not valid JSON"):
        migrate.copy(src, dst, source="persistdict-0")
    assert_no_destination(dst)


# Between persistdict backends, and what happens at the destination --------------------------


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


# Server destinations: one transaction ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["postgres", "redis"])
def test_copy_into_a_server_is_one_transaction(kind: str, tmp_path: Path) -> None:
    from tests.helpers import namespace, server_url

    url = server_url(kind)
    name = namespace(kind, tmp_path)
    place: dict[str, Any] = {"dst_table": name} if kind == "postgres" else {"prefix": name}
    opened: dict[str, Any] = {"table": name} if kind == "postgres" else {"prefix": name}
    src = tmp_path / "state"
    make_shelve(src, {**DATA, "zz unstorable": {1, 2}})

    with pytest.raises(UnstorableValueError, match="key 'zz unstorable'"):
        migrate.copy(src, url, trust_pickle=True, **place)
    with persistdict.open(url, **opened) as d:
        assert len(d) == 0, "a failed copy must leave nothing in the server"

    summary = migrate.copy(src, url, trust_pickle=True, on_error="skip", **place)
    assert summary.skipped == [("'zz unstorable'", summary.skipped[0][1])]
    with persistdict.open(url, **opened) as d:
        assert dict(d.items()) == DATA
    with pytest.raises(DestinationExistsError):
        migrate.copy(src, url, trust_pickle=True, on_error="skip", **place)
