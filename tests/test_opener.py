"""open(): detection, flags, file modes, URLs and the seed API."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest

import persistdict
from persistdict import JsonFileBackend, JsonSerializer, PersistDict, SqliteBackend
from persistdict.detect import detect_backend


@pytest.mark.parametrize(
    ("name", "backend"),
    [
        ("a.json", "json"),
        ("A.JSON", "json"),
        ("a.db", "sqlite"),
        ("a.sqlite", "sqlite"),
        ("a.sqlite3", "sqlite"),
        ("a.csv", "csv"),
        ("sqlite:///rel.db", "sqlite"),
        ("SQLITE:///rel.db", "sqlite"),
        ("memory://", "memory"),
    ],
)
def test_detection_by_scheme_and_suffix(name: str, backend: str) -> None:
    assert detect_backend(name) == backend


def test_detection_by_content_of_existing_files(tmp_path: Path) -> None:
    sq = tmp_path / "data.bin"
    with persistdict.open(tmp_path / "seed.db") as d:
        d["k"] = 1
    sq.write_bytes((tmp_path / "seed.db").read_bytes())
    js = tmp_path / "AppState"
    js.write_text('\ufeff  {"a": 1}', encoding="utf-8")
    assert detect_backend(sq) == "sqlite"
    assert detect_backend(js) == "json"
    with persistdict.open(js) as d:
        assert d == {"a": 1}


def test_format_names_the_snapshot_format(tmp_path: Path) -> None:
    target = tmp_path / "AppState.txt"
    with persistdict.open(target, format="json") as d:
        d["x"] = [1, 2]
    assert json.loads(target.read_text()) == {"x": [1, 2]}
    with persistdict.open(tmp_path / "t.txt", format="csv") as d:
        d["x"] = "1"
    assert (tmp_path / "t.txt").read_text().splitlines() == ["key,value", "x,1"]
    with pytest.raises(ValueError, match="format must be 'json', 'csv' or 'pickle', not 'xml'"):
        persistdict.open(tmp_path / "t.xml", format="xml")


def test_json_file_is_the_dict_itself(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    data = {"global": {"root_dir": "/srv", "n": [1, 2.5, None, True]}, "ünï": "✓", "": 0}
    with persistdict.open(target) as d:
        d.update(data)
        d["global"]["root_dir"] = "/data"
    data["global"]["root_dir"] = "/data"  # type: ignore[index]
    text = target.read_text(encoding="utf-8")
    assert json.loads(text) == data
    assert "✓" in text  # human-readable, not \\u escaped
    assert len(text.splitlines()) == len(data) + 2  # one top-level key per line


def test_flag_c_creates_empty_file_and_n_truncates(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    persistdict.open(target).close()
    assert json.loads(target.read_text()) == {}
    with persistdict.open(target) as d:
        d["a"] = 1
    persistdict.open(target, "n").close()
    assert json.loads(target.read_text()) == {}


def test_flag_n_on_sqlite_empties_only_its_table(tmp_path: Path) -> None:
    target = tmp_path / "app.db"
    with (
        persistdict.open(target, table="users") as users,
        persistdict.open(target, table="config") as config,
    ):
        users["u"] = 1
        config["c"] = 2
    with persistdict.open(target, "n", table="users") as users:
        assert len(users) == 0
    with persistdict.open(target, "r", table="config") as config:
        assert config == {"c": 2}


def test_sqlite_missing_table_read_only_is_an_error(tmp_path: Path) -> None:
    # SPEC section 1: a missing table with "r" is FileNotFoundError, not an empty dict.
    target = tmp_path / "app.db"
    with persistdict.open(target, table="a") as d:
        d["x"] = 1
    with pytest.raises(FileNotFoundError, match="has no table 'b'; its tables: a"):
        persistdict.open(target, "r", table="b")


@pytest.mark.parametrize("name", ["state.json", "data.db", "t.csv"])
def test_mode_of_created_files_and_kept_on_rewrite(tmp_path: Path, name: str) -> None:
    old = os.umask(0o022)
    try:
        target = tmp_path / name
        with persistdict.open(target, mode=0o600) as d:
            d["k"] = "v"
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        default = tmp_path / f"default-{name}"
        with persistdict.open(default) as d:
            d["k"] = "v"
        assert stat.S_IMODE(default.stat().st_mode) == 0o644  # 0o666 less the umask
        os.chmod(target, 0o640)
        with persistdict.open(target) as d:
            d["k"] = "changed"
        assert stat.S_IMODE(target.stat().st_mode) == 0o640
    finally:
        os.umask(old)


def test_sqlite_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with persistdict.open("sqlite:///rel.db") as d:
        d["a"] = 1
    assert (tmp_path / "rel.db").exists()
    absolute = tmp_path / "sub" / "abs.db"
    absolute.parent.mkdir()
    with persistdict.open(f"sqlite:///{absolute}") as d:
        d["b"] = 2
    with persistdict.open(absolute, "r") as d:
        assert d == {"b": 2}


def test_pathlike_and_str_targets_open_the_same_file(tmp_path: Path) -> None:
    with persistdict.open(tmp_path / "x.json") as d:
        d["a"] = 1
    with persistdict.open(str(tmp_path / "x.json"), "r") as d:
        assert d == {"a": 1}


def test_several_tables_in_one_file(tmp_path: Path) -> None:
    target = tmp_path / "app.db"
    with (
        persistdict.open(target, table="users") as u,
        persistdict.open(target, table="sessions") as s,
    ):
        u["alice"] = {"id": 1}
        s["abc"] = {"user": "alice"}
        assert dict(u) == {"alice": {"id": 1}}
        assert dict(s) == {"abc": {"user": "alice"}}
    cx = sqlite3.connect(target)
    tables = {r[0] for r in cx.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    cx.close()
    assert tables == {"users", "sessions"}


def test_seed_api(tmp_path: Path) -> None:
    d = PersistDict(SqliteBackend(str(tmp_path / "mydata.db"), table="config"))
    d["cfg"] = {"root": "/srv"}
    d.flush()
    d.close()
    with persistdict.open(tmp_path / "mydata.db", table="config", backend="sqlite") as again:
        assert again["cfg"] == {"root": "/srv"}
    batched = SqliteBackend(tmp_path / "b.db", "items", 100)
    with PersistDict(batched, serializer=JsonSerializer(ensure_ascii=True), lock=False) as b:
        b["k"] = "ü"
    cx = sqlite3.connect(tmp_path / "b.db")
    assert cx.execute("SELECT value FROM items").fetchone()[0] == '"\\u00fc"'
    cx.close()
    with PersistDict(JsonFileBackend(tmp_path / "s.json")) as j:
        j["a"] = [1]
    assert json.loads((tmp_path / "s.json").read_text()) == {"a": [1]}
    assert isinstance(JsonFileBackend(tmp_path / "t.json"), persistdict.Backend)
    assert isinstance(JsonSerializer(), persistdict.Serializer)
    with pytest.raises(ValueError, match="invalid table name"):
        SqliteBackend(tmp_path / "c.db", table="no-dashes")


def test_pickle_serializer_is_opt_in_per_key(tmp_path: Path) -> None:
    target = tmp_path / "objs.db"
    with persistdict.open(target, serializer="pickle") as d:
        d["s"] = {1, 2}
        d["t"] = (1, "a")
    with persistdict.open(target, serializer=persistdict.PickleSerializer()) as d:
        assert d["s"] == {1, 2}
        assert d["t"] == (1, "a")
    with persistdict.open(target) as d:
        with pytest.raises(persistdict.CorruptError, match="key 's' can't be decoded"):
            d["s"]  # read as JSON: the pickle bytes are not text
        assert "s" in d  # nothing was changed or dropped


def test_writeback_writes_only_changed_values(tmp_path: Path) -> None:
    target = tmp_path / "wb.db"
    with persistdict.open(target) as d:
        d.update({"changed": {"n": 1}, "untouched": {"n": 1}})
    wb = persistdict.open(target, writeback=True)
    wb["changed"]["n"] = 2
    assert wb["untouched"] == {"n": 1}  # read, cached, not modified
    with persistdict.open(target) as other:  # another writer changes the untouched key
        other["untouched"] = {"n": 99}
    wb.close()
    with persistdict.open(target, "r") as d:
        assert d == {"changed": {"n": 2}, "untouched": {"n": 99}}


def test_bare_protocol_backend_is_adapted() -> None:
    class Tiny:
        stores_objects = False
        read_only = False

        def __init__(self) -> None:
            self.data: dict[str, str | bytes] = {}

        def get(self, key: str) -> str | bytes:
            return self.data[key]

        def set(self, key: str, value: str | bytes) -> None:
            self.data[key] = value

        def delete(self, key: str) -> None:
            del self.data[key]

        def contains(self, key: str) -> bool:
            return key in self.data

        def iter_keys(self) -> object:
            return iter(list(self.data))

        def count(self) -> int:
            return len(self.data)

        def flush(self) -> None:
            pass

        def close(self) -> None:
            pass

    tiny = Tiny()
    with PersistDict(tiny) as d:  # type: ignore[arg-type]
        d.update(a=[1], b={"x": 2})
        with pytest.raises(RuntimeError), d.transaction():  # undo journal
            d["a"] = "changed"
            del d["b"]
            raise RuntimeError
        assert d == {"a": [1], "b": {"x": 2}}
    assert tiny.data == {"a": "[1]", "b": '{"x":2}'}
    with pytest.raises(TypeError, match="is not a persistdict backend"):
        PersistDict(object())  # type: ignore[arg-type]
