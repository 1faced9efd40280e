"""persistdict.migrate from diskcache folders: values kept in files, expiry, keys that are
not str, damage. Sources are made by diskcache itself and compared key by key."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import diskcache
import pytest

import persistdict
from persistdict import migrate
from persistdict.migrate import UnstorableValueError
from tests.migrate.sources import DATA, assert_no_destination, read_all, snapshot

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
