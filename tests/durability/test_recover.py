"""The way back from a damaged file: CorruptError messages, recover=True, and check()."""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict import BackendBase, PersistDict
from persistdict.fileio import previous_path

TARGETS = {"json": "state.json", "csv": "state.csv", "pickle": "state.bin"}
FIRST = {"a": "1"}
SECOND = {"a": "2", "b": "2"}


def _two_generations(folder: Path, backend: str) -> Path:
    path = folder / TARGETS[backend]
    with persistdict.open(path, backend=backend) as d:
        d.update(FIRST)
    with persistdict.open(path, backend=backend) as d:
        d.update(SECOND)
    return path


def _damage(path: Path) -> bytes:
    """Cut the file and add an unterminated quote: broken in every one of the formats."""
    raw = path.read_bytes()
    damaged = raw[: len(raw) // 2] + b'\n"'
    path.write_bytes(damaged)  # in place: the previous generation is another inode
    return damaged


@pytest.mark.parametrize(
    ("backend", "where"),
    [
        ("json", r"at line \d+ column \d+"),
        ("csv", r"line \d+"),
        ("pickle", r"at byte \d+"),
    ],
)
def test_corrupt_error_names_file_place_and_way_back(
    tmp_path: Path, backend: str, where: str
) -> None:
    path = _two_generations(tmp_path, backend)
    damaged = _damage(path)
    with pytest.raises(persistdict.CorruptError) as caught:
        persistdict.open(path, backend=backend)
    message = str(caught.value)
    assert repr(str(path)) in message
    assert f"({len(damaged)} bytes)" in message
    assert re.search(where, message), message
    assert "open with recover=True to restore it" in message
    assert path.read_bytes() == damaged


def test_without_a_previous_generation_no_recover_hint(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"a": ')
    with pytest.raises(persistdict.CorruptError, match="restore a backup") as caught:
        persistdict.open(path)
    assert "recover=True" not in str(caught.value)
    with pytest.raises(persistdict.CorruptError, match="found no previous generation"):
        persistdict.open(path, recover=True)
    assert path.read_text() == '{"a": '


@pytest.mark.parametrize("backend", sorted(TARGETS))
def test_recover_restores_previous_generation_and_says_what_was_lost(
    tmp_path: Path, backend: str
) -> None:
    path = _two_generations(tmp_path, backend)
    damaged = _damage(path)
    with pytest.warns(UserWarning, match="recover=True restored") as warned:
        d = persistdict.open(path, backend=backend, recover=True)
    with d:
        assert dict(d) == FIRST
    text = str(warned[0].message)
    assert "restored the previous generation" in text
    assert "1 key as saved" in text
    assert "is lost" in text
    kept = re.search(r"kept as '([^']+)'", text)
    assert kept is not None
    assert Path(kept.group(1)).read_bytes() == damaged
    assert Path(kept.group(1)).name.startswith(f"{path.name}.corrupt-")
    assert warned[0].filename == __file__  # points at the caller's open()
    with persistdict.open(path, backend=backend) as again:  # whole again: no recover needed
        assert dict(again) == FIRST


def test_recover_read_only_changes_no_file(tmp_path: Path) -> None:
    path = _two_generations(tmp_path, "json")
    _damage(path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.warns(UserWarning, match="no file was changed"):
        d = persistdict.open(path, flag="r", recover=True)
    with d:
        assert dict(d) == FIRST
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_recover_on_a_whole_file_does_nothing(tmp_path: Path, recwarn: Any) -> None:
    path = _two_generations(tmp_path, "json")
    with persistdict.open(path, recover=True) as d:
        assert dict(d) == SECOND
    assert len(recwarn) == 0
    assert previous_path(path).exists()


def test_damaged_previous_generation_too(tmp_path: Path) -> None:
    path = _two_generations(tmp_path, "json")
    damaged = _damage(path)
    previous_path(path).write_text("[")
    with pytest.raises(persistdict.CorruptError, match="is damaged too"):
        persistdict.open(path, recover=True)
    assert path.read_bytes() == damaged
    assert previous_path(path).read_text() == "["


def test_flag_n_over_a_damaged_file_keeps_the_good_previous_generation(tmp_path: Path) -> None:
    path = _two_generations(tmp_path, "json")
    _damage(path)
    with persistdict.open(path, flag="n") as d:
        assert dict(d) == {}
    with persistdict.open(path, flag="r") as r:
        assert r.backend.check() == []
    with persistdict.open(previous_path(path), format="json", flag="r") as prev:
        assert dict(prev) == FIRST


def test_recover_is_refused_by_backends_without_generations(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="does not take recover="):
        persistdict.open(tmp_path / "data.db", recover=True)


@pytest.mark.parametrize("backend", sorted(TARGETS))
def test_check_parses_the_file_on_disk(tmp_path: Path, backend: str) -> None:
    path = _two_generations(tmp_path, backend)
    d = persistdict.open(path, backend=backend)
    assert d.backend.check() == []
    damaged = _damage(path)  # behind the open dict's back
    problems = d.backend.check()
    assert len(problems) == 1
    assert repr(str(path)) in problems[0]
    assert f"({len(damaged)} bytes)" in problems[0]
    path.unlink()
    assert "can't read" in d.backend.check()[0]
    d["c"] = "3"
    d.close()  # the writer saves its whole data again
    with persistdict.open(path, backend=backend, flag="r") as r:
        assert dict(r) == {**SECOND, "c": "3"}


def test_sqlite_check_runs_integrity_check(tmp_path: Path) -> None:
    path = tmp_path / "data.db"
    with persistdict.open(path) as d:
        d.update({f"key{i:04d}": "x" * 200 for i in range(400)})
        assert d.backend.check() == []
    # Damage an index page in the middle of the file; page 1 (schema) stays whole.
    with sqlite3.connect(path) as cx:
        cx.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = cx.execute("PRAGMA page_size").fetchone()[0]
    cx.close()
    raw = bytearray(path.read_bytes())
    for at in range(page * 3 + 100, page * 3 + 400):
        raw[at] ^= 0x5A
    path.write_bytes(bytes(raw))
    try:
        d = persistdict.open(path, flag="r")
    except persistdict.CorruptError:
        pytest.fail("a damaged data page should still open; check() is what finds it")
    with d:
        problems = d.backend.check()
    assert problems
    assert all(p.startswith(repr(str(path))) for p in problems)


@pytest.mark.parametrize("content", [b'{"a": 1}\n', b"\x00" * 4096, os.urandom(5000)])
def test_non_sqlite_file_named_db_is_corrupt_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "data.db"
    path.write_bytes(content)
    for flag in ("c", "w", "r"):
        with pytest.raises(persistdict.CorruptError, match="not a usable SQLite database") as e:
            persistdict.open(path, flag=flag)
        assert repr(str(path)) in str(e.value)
    assert path.read_bytes() == content
    assert sorted(os.listdir(tmp_path)) == ["data.db"]


def test_sqlite_value_from_another_serializer_is_corrupt_error(tmp_path: Path) -> None:
    path = tmp_path / "data.db"
    with persistdict.open(path, serializer="pickle") as d:
        d["k"] = {"n": 1}
    with persistdict.open(path) as d:
        with pytest.raises(persistdict.CorruptError, match=r"key 'k' can't be decoded by "):
            d["k"]
        with pytest.raises(persistdict.CorruptError, match="serializer that wrote it"):
            list(d.items())
    with persistdict.open(path, serializer="pickle", flag="r") as d:
        assert d["k"] == {"n": 1}


class _Unreadable(BackendBase):
    """A store in which one key's value can't be read back."""

    def __init__(self) -> None:
        self.data = {"good": b"1", "bad": b"2"}

    def get(self, key: str) -> Any:
        if key == "bad":
            raise OSError(5, "Input/output error")
        return self.data[key]

    def iter_keys(self) -> Iterator[str]:
        return iter(list(self.data))


def test_default_check_reads_every_value() -> None:
    problems = _Unreadable().check()
    assert problems == ["custom: key 'bad' can't be read: [Errno 5] Input/output error"]
    assert PersistDict(_Unreadable()).backend.check() == problems
    with persistdict.open("memory://") as d:
        d["k"] = 1
        assert d.backend.check() == []
