"""persistdict.migrate from PermaDict files and from the original persistdict module's
(double-encoded JSON, its SQLite table), compared key by key after the import."""

from __future__ import annotations

import json
import pickle
import sqlite3
from pathlib import Path

import pytest

import persistdict
from persistdict import migrate
from persistdict.migrate import UntrustedPickleError
from tests.migrate.sources import DATA, assert_no_destination, read_all


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
