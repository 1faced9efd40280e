"""persistdict.migrate from sqlitedict files (pickled and JSON values, several tables,
truncation). Sources are made by sqlitedict itself and compared key by key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import persistdict
from persistdict import migrate
from persistdict.migrate import UntrustedPickleError
from tests.migrate.sources import DATA, assert_no_destination, make_sqlitedict, read_all, snapshot


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
