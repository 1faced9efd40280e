"""What errors and summaries say, through the API and through the ``persistdict`` command.

A damaged file's error offers only remedies that keep data (``recover=True`` / ``--recover``,
``persistdict check``, a backup), each in the words of the caller: Python arguments for the
API, options for the command line. NaN and Infinity are refused where JSON is written. The
smaller glitches of issue 15 (plurals, a file named twice, a missing folder, a rate for an
instant copy, half a dump on stdout) each have a test here.
"""

from __future__ import annotations

import ast
import functools
import json
import math
import re
import sqlite3
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict.cli.commands import explain
from persistdict.serializers import JsonSerializer
from tests.durability.test_recover import TARGETS as SNAPSHOTS
from tests.durability.test_recover import _damage, _two_generations
from tests.test_cli import ROOT, assert_one_line_error, run

# A remedy that throws data away: starting empty, or replacing what is there.
_DELETING = re.compile(r"flag\s*=\s*['\"]?n\b|flag 'n'|--replace|existing='replace'")
# Words that say the remedy loses data.
_WARNED = re.compile(r"discard|delet|erase|replac\w* (them|it|\{\})|is lost|are lost|empty")
# Python's way of naming an argument or a method, which means nothing in a shell.
_PYTHON = re.compile(r"\b[a-z_]+=(True|False|'|\"|\s|,|$)|\b[a-z_]+\(\)")


def _trust(backend: str) -> list[str]:
    """The command line's opt-in a pickle file needs (SPEC 10), whatever the test is about."""
    return ["--trust-pickle"] if backend == "pickle" else []


def _assert_keeps_data(message: str) -> None:
    if _DELETING.search(message):
        assert _WARNED.search(message), f"a data-deleting remedy, unannounced: {message}"


# 6. Corrupt files: ways back that keep data, in the caller's words. -------------------------


@pytest.mark.parametrize("backend", sorted(SNAPSHOTS))
def test_corrupt_snapshot_offers_recover_check_and_backup_never_flag_n(
    tmp_path: Path, backend: str
) -> None:
    path = _two_generations(tmp_path, backend)
    damaged = _damage(path)
    with pytest.raises(persistdict.CorruptError) as caught:
        persistdict.open(path, backend=backend)
    api = str(caught.value)
    assert "open with recover=True to restore it" in api
    assert "what was saved after it is lost" in api
    assert "restore a backup" in api
    assert f"`persistdict check {path}`" in api
    assert "flag" not in api
    cli = explain(caught.value)
    assert "rerun with --recover" in cli
    assert not _PYTHON.search(cli), cli
    assert path.read_bytes() == damaged

    result = run("get", path, "a", "--backend", backend, *_trust(backend))
    assert_one_line_error(result, 1, "--recover", "persistdict check", "restore a backup")
    assert "recover=True" not in result.stderr
    assert "flag" not in result.stderr
    result = run("check", path, "--backend", backend, *_trust(backend))
    assert result.returncode == 1
    assert "--recover" in result.stdout
    assert not _PYTHON.search(result.stdout), result.stdout
    assert path.read_bytes() == damaged


def _trust(backend: str) -> list[str]:
    # The command line reads pickles only with --trust-pickle (issue 11).
    return ["--trust-pickle"] if backend == "pickle" else []


@pytest.mark.parametrize("backend", sorted(SNAPSHOTS))
def test_cli_recover_reads_then_restores_the_previous_generation(
    tmp_path: Path, backend: str
) -> None:
    path = _two_generations(tmp_path, backend)
    damaged = _damage(path)
    result = run("get", path, "a", "--backend", backend, "--recover", *_trust(backend))
    assert (result.returncode, result.stdout) == (0, '"1"\n'), result.stderr
    assert result.stderr.startswith("persistdict: warning: ")
    assert "--recover read the previous generation instead; no file was changed" in result.stderr
    assert "recover=True" not in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert path.read_bytes() == damaged  # reading changes nothing

    result = run("set", path, "b", '"3"', "--backend", backend, "--recover", *_trust(backend))
    assert result.returncode == 0, result.stderr
    assert "--recover restored the previous generation" in result.stderr
    kept = [p for p in tmp_path.iterdir() if p.name.startswith(f"{path.name}.corrupt-")]
    assert [p.read_bytes() for p in kept] == [damaged]  # the damaged file is kept aside
    with persistdict.open(path, backend=backend, flag="r") as d:
        assert dict(d) == {"a": "1", "b": "3"}


def test_convert_recover_copies_the_previous_generation_of_a_damaged_source(
    tmp_path: Path,
) -> None:
    path = _two_generations(tmp_path, "json")
    damaged = _damage(path)
    result = run("convert", path, tmp_path / "out.db")
    assert_one_line_error(result, 1, "rerun with --recover")
    result = run("convert", path, tmp_path / "out.db", "--recover")
    assert result.returncode == 0, result.stderr
    assert "copying the previous generation (1 key)" in result.stderr
    with persistdict.open(tmp_path / "out.db", flag="r") as d:
        assert dict(d) == {"a": "1"}
    assert path.read_bytes() == damaged  # SRC is never changed
    whole = tmp_path / "whole.json"
    with persistdict.open(whole) as d:
        d["w"] = 1
    result = run("convert", whole, tmp_path / "whole.db", "--recover")
    assert result.returncode == 0, result.stderr
    assert "previous generation" not in result.stderr  # a whole SRC is copied as it is
    result = run("convert", tmp_path / "out.db", tmp_path / "x.json", "--recover")
    assert_one_line_error(result, 2, "--recover", "sqlite")


def test_cli_recover_without_a_previous_generation_says_so(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"a": ')
    result = run("get", path, "a")
    assert_one_line_error(result, 1, "repair it", "persistdict check", "restore a backup")
    assert "--recover" not in result.stderr  # nothing to recover from
    result = run("get", path, "a", "--recover")
    assert_one_line_error(result, 1, "--recover found no previous generation")
    assert "recover=True" not in result.stderr
    assert path.read_text() == '{"a": '


def test_cli_recover_on_a_store_without_generations_is_a_usage_error(tmp_path: Path) -> None:
    result = run("get", tmp_path / "data.db", "a", "--recover")
    assert_one_line_error(result, 2, "--recover", "json, csv or pickle", "sqlite")
    assert not (tmp_path / "data.db").exists()


def _corrupt_errors(folder: Path) -> dict[str, tuple[persistdict.CorruptError, str]]:
    """Every kind of damage the built-in file backends report: the error and the target."""
    made: dict[str, tuple[Callable[[], Any], str]] = {}
    junk_db = folder / "junk.db"
    junk_db.write_bytes(b"\x00" * 4096)
    made["sqlite file"] = (lambda: persistdict.open(junk_db), str(junk_db))
    other = folder / "other.db"
    with sqlite3.connect(other) as cx:
        cx.execute("CREATE TABLE items (id INTEGER, name TEXT, extra BLOB)")
    cx.close()
    made["sqlite schema"] = (lambda: persistdict.open(other), str(other))
    pickled = folder / "pickled.db"
    with persistdict.open(pickled, serializer="pickle") as d:
        d["k"] = {1}
    made["value"] = (lambda: persistdict.open(pickled, flag="r")["k"], str(pickled))
    junk_dbm = folder / "junk"
    junk_dbm.write_bytes(b"not a dbm file at all")
    made["dbm"] = (lambda: persistdict.open(junk_dbm, backend="dbm"), str(junk_dbm))
    for backend, name in SNAPSHOTS.items():
        sub = folder / backend
        sub.mkdir()
        path = _two_generations(sub, backend)
        _damage(path)
        made[backend] = (functools.partial(persistdict.open, path, backend=backend), str(path))
        lone = sub / f"lone-{name}"
        lone.write_bytes(b'{"a": ')
        made[f"{backend} alone"] = (
            functools.partial(persistdict.open, lone, backend=backend),
            str(lone),
        )
        made[f"{backend} recover alone"] = (
            functools.partial(persistdict.open, lone, backend=backend, recover=True),
            str(lone),
        )
    errors = {}
    for what, (provoke, target) in made.items():
        with pytest.raises(persistdict.CorruptError) as caught:
            provoke()
        errors[what] = (caught.value, target)
    return errors


def test_no_corrupt_error_proposes_deleting_data_and_the_cli_speaks_cli(tmp_path: Path) -> None:
    errors = _corrupt_errors(tmp_path)
    assert len(errors) == 4 + 3 * 3
    for what, (exc, _) in errors.items():
        for message in (str(exc), explain(exc)):
            _assert_keeps_data(message)
            assert "left untouched" in message, (what, message)
        remedy = explain(exc).split("left untouched", 1)[1]  # before it: what is wrong
        assert not _PYTHON.search(remedy), (what, remedy)


def _literal(node: ast.AST) -> str:
    """The text of a message expression, ``{}`` where an f-string inserts a value."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else ""
    if isinstance(node, ast.JoinedStr):
        return "".join(_literal(v) if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return " ".join(_literal(child) for child in ast.iter_child_nodes(node))


def test_no_message_in_the_source_proposes_deleting_data_unannounced() -> None:
    # Every string the library raises, warns or prints, however it is split over lines.
    found = 0
    for source in sorted((ROOT / "src" / "persistdict").rglob("*.py")):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if not (name.endswith("Error") or name in ("warn", "print", "error")):
                continue
            text = " ".join(
                _literal(arg) for arg in [*node.args, *(k.value for k in node.keywords)]
            )
            if _DELETING.search(text):
                found += 1
                _assert_keeps_data(text)
    assert found >= 1  # the scan sees the messages it is meant to check (--replace's)


def test_lmdb_damage_names_the_path_and_keeps_data(tmp_path: Path) -> None:
    pytest.importorskip("lmdb")
    env = tmp_path / "data.lmdb"
    env.mkdir()
    (env / "data.mdb").write_bytes(b"\xff" * 16384)
    with pytest.raises(persistdict.CorruptError) as caught:
        persistdict.open(env, flag="r")
    _assert_keeps_data(str(caught.value))
    assert repr(str(env)) in str(caught.value)
    assert "restore a backup" in str(caught.value).lower()


# 9. NaN and Infinity: refused where JSON is written. ------------------------------------------


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, [1, {"x": math.nan}]])
def test_json_file_refuses_nan_at_assignment_naming_the_key(tmp_path: Path, value: Any) -> None:
    path = tmp_path / "state.json"
    with persistdict.open(path) as d:
        d["ok"] = 1.5
    before = path.read_bytes()
    with persistdict.open(path) as d:
        with pytest.raises(ValueError, match=r"key 'bad'.*NaN or Infinity"):
            d["bad"] = value
        with pytest.raises(ValueError, match="key 'bad'"):
            d.update({"fine": 2, "bad": value})  # all or nothing
        assert dict(d) == {"ok": 1.5}
    assert path.read_bytes() == before


def test_json_file_refuses_nan_put_in_a_nested_value_at_flush(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    d = persistdict.open(path)
    d["list"] = [1]
    d.flush()
    before = path.read_bytes()
    d["list"].append(math.inf)  # behind set()'s back
    with pytest.raises(ValueError, match=r"key 'list'.*NaN or Infinity"):
        d.flush()
    assert path.read_bytes() == before
    d["list"].pop()
    d.close()
    assert json.loads(path.read_text()) == {"list": [1]}


def test_json_file_that_holds_nan_already_is_read_and_saved_as_it_was(tmp_path: Path) -> None:
    # Written by another program: refusing to save it would strand its data.
    path = tmp_path / "state.json"
    path.write_text('{"x": NaN, "y": [Infinity]}')
    with persistdict.open(path) as d:
        assert math.isnan(d["x"])
        d["z"] = 1
    with persistdict.open(path, flag="r") as d:
        assert d["y"] == [math.inf]
        assert d["z"] == 1


def test_json_serializer_refuses_nan_by_default_and_allows_it_when_asked(tmp_path: Path) -> None:
    with persistdict.open(tmp_path / "data.db") as d:
        with pytest.raises(ValueError, match=r"key 'k'.*NaN or Infinity") as caught:
            d["k"] = {"v": math.nan}
        assert "k" not in d
    assert "allow_nan" not in repr(JsonSerializer())
    assert JsonSerializer() == JsonSerializer(allow_nan=False)
    with pytest.raises(ValueError, match="Out of range float"):
        JsonSerializer().dumps(math.inf)
    loose = JsonSerializer(allow_nan=True)
    assert loose.dumps([math.inf]) == "[Infinity]"
    with persistdict.open(tmp_path / "loose.db", serializer=loose) as d:
        d["k"] = math.inf
        assert d["k"] == math.inf
    # NaN stored before (or by allow_nan=True) is still read by the default serializer.
    with persistdict.open(tmp_path / "loose.db", flag="r") as d:
        assert d["k"] == math.inf
    assert caught.value.__cause__ is not None


def test_cli_refuses_nan_in_set_and_load_and_shows_none(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    for value in ("NaN", "[1, Infinity]", '{"a": -Infinity}'):
        result = run("set", target, "k", value)
        assert_one_line_error(result, 2, "is not JSON", "not valid JSON")
    result = run("load", target, stdin='{"a": NaN}')
    assert_one_line_error(result, 2, "stdin is not valid JSON", "NaN")
    assert not target.exists() or json.loads(target.read_text()) == {}
    # A value stored with NaN allowed can't be shown as JSON: an error, never bare NaN.
    with persistdict.open(tmp_path / "data.db", serializer=JsonSerializer(allow_nan=True)) as d:
        d["k"] = [math.nan]
    result = run("get", tmp_path / "data.db", "k")
    assert_one_line_error(result, 2, "key 'k'", "NaN or Infinity")
    assert result.stdout == ""


# 10. Message glitches. -------------------------------------------------------------------------


def test_read_only_error_says_read_only_once(tmp_path: Path) -> None:
    for name in ("state.json", "data.db"):
        with persistdict.open(tmp_path / name) as d:
            d["a"] = 1
        with (
            persistdict.open(tmp_path / name, flag="r") as d,
            pytest.raises(persistdict.ReadOnlyError) as caught,
        ):
            d["a"] = 2
        message = str(caught.value)
        assert message.count("read-only") == 1, message
        assert str(tmp_path / name) in message


@pytest.mark.parametrize(
    ("name", "backend"),
    [("x.json", "auto"), ("x.csv", "auto"), ("x.db", "auto"), ("x", "dbm"), ("x.lmdb", "auto")],
)
def test_missing_file_is_named_once(tmp_path: Path, name: str, backend: str) -> None:
    if name.endswith(".lmdb"):
        pytest.importorskip("lmdb")
    target = tmp_path / name
    with pytest.raises(FileNotFoundError) as caught:
        persistdict.open(target, flag="r", backend=backend)
    assert caught.value.filename == str(target)
    # The whole path, not the bare name: a random temp folder may contain "x".
    assert str(caught.value).count(str(target)) == 1, str(caught.value)
    assert "flag='c'" in str(caught.value)
    result = run("get", target, "k", "--backend", backend)
    assert_one_line_error(result, 3, "no such", repr(str(target)), "check the path")
    assert result.stderr.count(str(target)) == 1
    assert "flag" not in result.stderr


@pytest.mark.parametrize("name", ["x.json", "x.db", "x.csv"])
def test_set_into_a_missing_folder_names_the_folder(tmp_path: Path, name: str) -> None:
    target = tmp_path / "nodir" / name
    result = run("set", target, "k", "1")
    assert_one_line_error(result, 3, f"no such folder {str(tmp_path / 'nodir')!r}", "create it")
    assert "no such file" not in result.stderr
    with pytest.raises(FileNotFoundError, match="No such folder") as caught:
        persistdict.open(target)
    assert caught.value.filename == str(target)
    assert not (tmp_path / "nodir").exists()


def test_counts_of_one_are_singular_and_tiny_copies_show_no_rate(tmp_path: Path) -> None:
    src = tmp_path / "a.json"
    with persistdict.open(src) as d:
        d["only"] = 1
    result = run("check", src)
    assert result.stdout == f"ok: json {str(src)!r}: 1 key, every value readable\n"
    result = run("convert", src, tmp_path / "b.db")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"copied 1 key from .* in \d+\.\ds\n", result.stderr), result.stderr
    result = run("convert", src, tmp_path / "b.db")
    assert_one_line_error(result, 3, "already holds 1 key;", "--replace to replace it")
    with persistdict.open(src) as d:
        d.update({f"k{i}": i for i in range(4)})
    result = run("convert", src, tmp_path / "c.json")
    assert "copied 5 keys" in result.stderr
    assert "keys/s" not in result.stderr  # 5 keys in a blink: a rate would be noise


def test_failing_dump_prints_nothing_on_stdout(tmp_path: Path) -> None:
    target = tmp_path / "data.db"
    with persistdict.open(target, serializer="pickle") as d:
        d.update({f"k{i:03d}": i for i in range(200)})
        d["zzz"] = {1, 2}  # a set: no JSON for it, and sqlite lists it last
    result = run("dump", target, "--serializer", "pickle", "--trust-pickle")
    assert_one_line_error(result, 2, "key 'zzz'", "can't be shown as JSON")
    assert result.stdout == ""
    with persistdict.open(target, serializer="pickle") as d:
        del d["zzz"]
    result = run("dump", target, "--serializer", "pickle", "--trust-pickle")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {f"k{i:03d}": i for i in range(200)}


def test_dump_of_a_large_dict_is_whole(tmp_path: Path) -> None:
    # Larger than the spool's memory part (8 MiB), so the temp file path is taken too.
    target = tmp_path / "big.json"
    data = {f"k{i:05d}": "x" * 1000 for i in range(10_000)}
    with persistdict.open(target) as d:
        d.update(data)
    result = run("dump", target)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == data


def test_closed_and_one_byte_messages_read_right(tmp_path: Path) -> None:
    d = persistdict.open(tmp_path / "state.json")
    d.close()
    with pytest.raises(persistdict.ClosedError) as closed:
        d["a"]
    assert "(closed)" not in str(closed.value)
    assert str(closed.value).startswith(f"json {str(tmp_path / 'state.json')!r} is closed;")
    (tmp_path / "one.json").write_bytes(b"{")
    with pytest.raises(persistdict.CorruptError, match=r"\(1 byte\) is not a valid JSON file"):
        persistdict.open(tmp_path / "one.json")


def test_recover_warning_is_singular_for_one_key(tmp_path: Path) -> None:
    path = _two_generations(tmp_path, "json")
    _damage(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        persistdict.open(path, flag="r", recover=True).close()
    assert "It holds 1 key as saved" in str(caught[0].message)


@pytest.mark.parametrize("target", ["noext", "garbage", "nosuch://x", "br{ace}s"])
def test_an_unknown_backend_is_explained_with_cli_options(tmp_path: Path, target: str) -> None:
    """``backend=`` and ``format='json'`` mean nothing in a shell: the command line's error
    names ``--backend`` and ``--format``; the API's keeps its keyword arguments."""
    (tmp_path / "garbage").write_bytes(b"\x00\x01 neither json nor sqlite")
    result = run("get", target, "k", cwd=tmp_path)
    assert_one_line_error(result, 2, "--backend")
    assert not _PYTHON.search(result.stderr), result.stderr
    with pytest.raises(ValueError, match="backend=") as caught:
        persistdict.open(tmp_path / target if "://" not in target else target)
    assert "--backend" not in str(caught.value)
    assert (tmp_path / "garbage").read_bytes() == b"\x00\x01 neither json nor sqlite"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage"]


def test_a_value_a_file_cant_hold_is_explained_in_cli_words(tmp_path: Path) -> None:
    """``str()`` and ``None`` mean nothing to a shell user; the remedies are ``--text``, a JSON
    string and JSON's ``null``."""
    result = run("set", tmp_path / "t.csv", "k", "42")
    assert_one_line_error(result, 2, "--text", "key 'k' got int")
    assert not _PYTHON.search(result.stderr), result.stderr
    assert run("set", tmp_path / "t.csv", "k", "42", "--text").returncode == 0
    result = run("set", tmp_path / "t.json", "k", "1e999")  # json reads it as Infinity
    assert_one_line_error(result, 2, "NaN or Infinity", "null")


def test_check_reports_an_undecodable_value_with_cli_remedies(tmp_path: Path) -> None:
    """``check`` quoted the API's message for a value that doesn't decode: "open it with the
    serializer that wrote it (serializer=), or run d.backend.check()"."""
    target = tmp_path / "data.db"
    with persistdict.open(target) as d:
        d["good"] = 1
    with sqlite3.connect(target) as cx:
        cx.execute("INSERT INTO items VALUES ('bad', '{not json')")
    cx.close()
    result = run("check", target)
    assert result.returncode == 1, result
    assert "broken:" in result.stdout
    assert "key 'bad'" in result.stdout
    assert "--serializer" in result.stdout
    assert "serializer=)" not in result.stdout
    assert "d.backend.check()" not in result.stdout
