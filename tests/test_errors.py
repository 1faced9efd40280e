"""Bad input: the exact exception, a message naming the file or key, and nothing changed."""

from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict import CorruptError, SqliteBackend


def _bytes_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize(
    ("name", "content", "fault"),
    [
        ("state.json", b'{"a": 1,', "Expecting property name"),
        ("state.json", b'{"a": 1}\n{"b": 2}', "Extra data"),
        ("state.json", b"[1, 2, 3]", "top level is a JSON list, not an object"),
        ("state.json", b'"just a string"', "top level is a JSON str"),
        ("state.json", b"", "Expecting value"),
        ("state.json", b'{"a": "\xff\xfe"}', "not UTF-8"),
        ("state.json", b'{"a": "x\ny"}', "Invalid control character at line 1 column 9"),
        ("table.csv", b"key,value\na,1\nb,2,3\n", "line 3 has 3 fields"),
        ("table.csv", b"key,value\na,1\na,2\n", "key 'a' appears on line 2 and 3"),
        ("table.csv", b'key,value\n"a,1\n', "unexpected end of data"),
        ("table.csv", b"key,value\na,1\nb,2\n\0\0\0\0", "a NUL byte on line 4"),
        ("data.db", b"this is not a database, just text" * 40, "not a usable SQLite database"),
        ("data.sqlite", b"SQLite format 3\x00" + b"\x00" * 200, "SQLite"),
    ],
)
def test_corrupt_file_raises_and_is_left_untouched(
    tmp_path: Path, name: str, content: bytes, fault: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    before = _bytes_of(tmp_path)
    for flag in ("c", "w", "r"):
        with pytest.raises(CorruptError) as info:
            persistdict.open(path, flag)
        message = str(info.value)
        assert str(path) in message
        assert fault in message
        assert isinstance(info.value, ValueError)
    after = _bytes_of(tmp_path)
    assert after[name] == before[name]
    assert not any(".persistdict-" in n and n.endswith(".tmp") for n in after)


def test_corrupt_pickle_file_raises_when_pickle_is_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "state.pkl"
    path.write_bytes(b"\x80\x05junk junk junk")
    with pytest.raises(CorruptError, match="can't unpickle"):
        persistdict.open(path, backend="pickle")
    path.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(CorruptError, match="holds a list, not a dict"):
        persistdict.open(path, format="pickle")
    assert path.read_bytes() == pickle.dumps([1, 2])


class _Trap:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("name", ["state", "state.pkl", "state.pickle", "state.bin"])
def test_pickle_is_never_detected_or_loaded(tmp_path: Path, name: str) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / name
    path.write_bytes(pickle.dumps({"x": _Trap(str(marker))}))
    with pytest.raises(ValueError, match="backend=") as info:
        persistdict.open(path)
    assert "pickle" in str(info.value)  # the choices are listed
    assert not marker.exists()


def test_unknown_backend_lists_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown backend 'nosuch'; choose one of: ") as info:
        persistdict.open(tmp_path / "x.db", backend="nosuch")
    for name in ("json", "sqlite", "csv", "memory"):
        assert name in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_unknown_extension_names_the_file_and_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "AppState.txt"
    with pytest.raises(ValueError, match=r"AppState\.txt") as info:
        persistdict.open(target)
    assert "format='json'" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_unknown_url_scheme(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no backend handles URLs starting ftp://"):
        persistdict.open("ftp://example/x")


@pytest.mark.parametrize("table", ["", "1abc", "has space", "semi;colon", 'quo"te', "naïve"])
def test_invalid_table_name_is_refused_before_any_io(tmp_path: Path, table: str) -> None:
    existing = tmp_path / "data.db"
    with persistdict.open(existing) as d:
        d["k"] = 1
    before = _bytes_of(tmp_path)
    with pytest.raises(ValueError, match="invalid table name"):
        persistdict.open(existing, table=table)
    with pytest.raises(ValueError, match="invalid table name"):
        SqliteBackend(existing, table=table)
    with pytest.raises(ValueError, match="invalid table name"):
        persistdict.open(tmp_path / "new.db", table=table)
    assert _bytes_of(tmp_path) == before
    assert not (tmp_path / "new.db").exists()


def test_non_str_table_name(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="table name must be a str, not int"):
        persistdict.open(tmp_path / "x.db", table=5)  # type: ignore[arg-type]


@pytest.mark.parametrize("flag", ["x", "rw", "", "C"])
def test_bad_flag(tmp_path: Path, flag: str) -> None:
    with pytest.raises(ValueError, match=f"flag must be one of 'r', 'w', 'c' or 'n', not {flag!r}"):
        persistdict.open(tmp_path / "x.json", flag)
    assert list(tmp_path.iterdir()) == []


def test_serializer_for_a_snapshot_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="json backend encodes its whole file itself"):
        persistdict.open(tmp_path / "x.json", serializer="pickle")
    assert list(tmp_path.iterdir()) == []


def test_unknown_serializer_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown serializer 'yaml'"):
        persistdict.open(tmp_path / "x.db", serializer="yaml")


def test_option_a_backend_does_not_take(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="the json backend does not take commit_every="):
        persistdict.open(tmp_path / "x.json", commit_every=10)
    with pytest.raises(TypeError, match="the json backend does not take table="):
        persistdict.open(tmp_path / "x.json", table="users")
    with pytest.raises(TypeError, match="the sqlite backend does not take colour="):
        persistdict.open(tmp_path / "x.db", colour="red")


def test_bad_sqlite_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="commit_every must be an int >= 0, not -1"):
        persistdict.open(tmp_path / "x.db", commit_every=-1)
    with pytest.raises(ValueError, match="synchronous must be one of"):
        persistdict.open(tmp_path / "x.db", synchronous="sometimes")


def test_value_error_keeps_the_file_bytes(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with persistdict.open(path) as d:
        d["a"] = {"n": 1}
    before = path.read_bytes()
    with persistdict.open(path) as d:
        with pytest.raises(TypeError, match="key 'a'"):
            d["a"] = {1, 2, 3}
        with pytest.raises(ValueError, match="key 'b'"):
            circular: list[Any] = []
            circular.append(circular)
            d["b"] = circular
    assert path.read_bytes() == before


def test_nested_unencodable_value_fails_at_flush_keeping_file_and_memory(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    d = persistdict.open(path)
    d["a"] = {"n": 1}
    d.flush()
    before = path.read_bytes()
    d["a"]["bad"] = object()  # a nested change no assignment saw
    with pytest.raises(TypeError, match="not JSON serializable"):
        d.flush()
    assert path.read_bytes() == before
    assert "bad" in d["a"]  # memory kept
    with pytest.raises(TypeError):
        d.close()  # closing can't save it either, so the dict stays open
    assert not d.closed
    del d["a"]["bad"]
    d.close()
    assert persistdict.open(path, "r") == {"a": {"n": 1}}


def test_sqlite_db_written_by_another_program_with_wrong_schema(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    cx = sqlite3.connect(path)
    cx.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    cx.execute("INSERT INTO items (name) VALUES ('x')")
    cx.commit()
    cx.close()
    with pytest.raises(CorruptError, match="table 'items'") as info:
        persistdict.open(path)
    assert "table=" in str(info.value)


def test_csv_refuses_nul_characters_it_could_not_read_back(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    with persistdict.open(path) as d:
        d["a"] = "1"
        with pytest.raises(ValueError, match=r"key 'b'.*NUL character"):
            d["b"] = "x\0y"
        with pytest.raises(ValueError, match="NUL character"):
            d["c\0"] = "z"
    assert persistdict.open(path, "r") == {"a": "1"}


# A key or value UTF-8 can't encode (a lone surrogate): one clear error on every file backend.

_UTF8_TARGETS = {
    "sqlite": ("data.db", {}),
    "sqlite-batched": ("data.db", {"commit_every": 10}),
    "dbm": ("shelf", {"backend": "dbm"}),
    "lmdb": ("data.lmdb", {}),
}


# dbm keeps such keys as they are (surrogatepass) and reads them back: only its values are
# refused, so its key and update cases are not collected.
_UTF8_CASES = [
    (name, where)
    for name in sorted(_UTF8_TARGETS)
    for where in ("key", "value", "nested-value", "update")
    if not (name == "dbm" and where in ("key", "update"))
]


@pytest.mark.parametrize(("name", "where"), _UTF8_CASES, ids=["-".join(c) for c in _UTF8_CASES])
def test_a_lone_surrogate_is_refused_naming_the_key_and_nothing_changes(
    tmp_path: Path, name: str, where: str
) -> None:
    """SQLite and dbm let the encoder's bare ``UnicodeEncodeError`` out (no key, no file, no
    remedy); LMDB, Redis and PostgreSQL said which key can't be stored as UTF-8."""
    if name == "lmdb":
        pytest.importorskip("lmdb")
    path, options = _UTF8_TARGETS[name]
    key, value = "k", "ok"
    if where == "key":
        key = "bad\ud800"
    elif where == "value":
        value = "bad\udcff"
    elif where == "nested-value":
        value = ["bad\udcff"]  # type: ignore[assignment]
    with persistdict.open(tmp_path / path, **options) as d:
        d["kept"] = 1
        with pytest.raises(ValueError, match="UTF-8") as caught:
            if where == "update":
                d.update({"a": 1, "bad\ud800": 2})
            else:
                d[key] = value
        message = str(caught.value)
        assert "can't store" in message, message
        if where != "update":
            assert repr(key) in message, message
        d["after"] = 2
    with persistdict.open(tmp_path / path, flag="r", **options) as d:
        assert dict(d) == {"kept": 1, "after": 2}
