"""The command line, driven as a user would: ``python -m persistdict`` in a subprocess."""

from __future__ import annotations

import json
import os
import pty
import re
import shelve
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlitedict

import persistdict
from persistdict.cli import EXIT_CODES, build_parser

ROOT = Path(__file__).resolve().parent.parent


def run(
    *args: str | Path, stdin: str = "", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "persistdict", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *parts: str) -> None:
    assert result.returncode == code, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("persistdict: error: ")
    assert "Traceback" not in result.stderr
    for part in parts:
        assert part in lines[0]


def read_all(target: Path, **options: Any) -> dict[str, Any]:
    with persistdict.open(target, "r", **options) as d:
        return dict(d.items())


# get, set, del, keys ------------------------------------------------------------------------


def test_set_then_get_round_trips_json(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    assert run("set", target, "cfg", '{"root": "/srv", "n": [1, 2]}').returncode == 0
    assert run("set", target, "ключ", '"värde"').returncode == 0
    result = run("get", target, "cfg")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"root": "/srv", "n": [1, 2]}
    assert run("get", target, "ключ").stdout == '"värde"\n'
    assert run("get", target, "ключ", "--raw").stdout == "värde\n"
    assert json.loads(target.read_text(encoding="utf-8")) == {
        "cfg": {"root": "/srv", "n": [1, 2]},
        "ключ": "värde",
    }


def test_set_with_text_and_table_on_sqlite(tmp_path: Path) -> None:
    target = tmp_path / "data.db"
    assert run("set", target, "greeting", "hello world", "--text", "--table", "t").returncode == 0
    assert read_all(target, table="t") == {"greeting": "hello world"}
    assert run("get", target, "greeting", "--table", "t").stdout == '"hello world"\n'


def test_set_value_that_is_not_json_is_a_usage_error(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    result = run("set", target, "k", "{oops")
    assert_one_line_error(result, 2, "is not JSON", "--text")
    assert not target.exists()


def test_get_missing_key_and_missing_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text('{"a": 1}')
    assert_one_line_error(run("get", target, "b"), 1, "key 'b' not found", "state.json")
    missing = tmp_path / "nope.json"
    assert_one_line_error(run("get", missing, "b"), 3, "no such file", "nope.json")
    assert not missing.exists()


def test_del_removes_and_reports_a_missing_key(tmp_path: Path) -> None:
    target = tmp_path / "data.db"
    with persistdict.open(target) as d:
        d.update({"a": 1, "b": 2})
    assert run("del", target, "a").returncode == 0
    assert read_all(target) == {"b": 2}
    assert_one_line_error(run("del", target, "a"), 1, "key 'a' not found")


def test_keys_one_per_line_and_nul_separated(tmp_path: Path) -> None:
    target = tmp_path / "data.db"
    keys = [f"key {i}" for i in range(1500)] + ["two\nlines"]
    with persistdict.open(target) as d:
        d.update(dict.fromkeys(keys, 0))
    plain = run("keys", target).stdout
    assert plain.count("\n") == len(keys) + 1  # the key with a newline spans two lines
    nul = run("keys", target, "-0").stdout
    assert sorted(nul.split("\0")[:-1]) == sorted(keys)


def test_a_bad_backend_name_is_a_usage_error(tmp_path: Path) -> None:
    result = run("keys", tmp_path / "x.db", "--backend", "nosuch")
    assert_one_line_error(result, 2, "unknown backend 'nosuch'")


def test_format_option_reads_a_file_without_extension(tmp_path: Path) -> None:
    target = tmp_path / "AppState.txt"
    target.write_text('{"a": 1}')
    assert run("get", target, "a", "--format", "json").stdout == "1\n"


# dump and load -------------------------------------------------------------------------------


def test_dump_prints_one_json_object_and_load_reads_it_back(tmp_path: Path) -> None:
    data = {f"k{i}": {"i": i, "t": "ü"} for i in range(1200)} | {"": None}
    with persistdict.open(tmp_path / "a.db") as d:
        d.update(data)
    dumped = run("dump", tmp_path / "a.db")
    assert dumped.returncode == 0
    assert json.loads(dumped.stdout) == data
    loaded = run("load", tmp_path / "b.json", stdin=dumped.stdout)
    assert loaded.returncode == 0, loaded.stderr
    assert read_all(tmp_path / "b.json") == data
    assert json.loads(run("dump", tmp_path / "empty.json", "--format", "json").stdout or "{}") == {}


def test_dump_of_an_empty_dict(tmp_path: Path) -> None:
    with persistdict.open(tmp_path / "e.db"):
        pass
    assert run("dump", tmp_path / "e.db").stdout == "{}\n"


def test_load_merges_or_replaces(tmp_path: Path) -> None:
    target = tmp_path / "s.json"
    target.write_text('{"old": 1, "a": 0}')
    assert run("load", target, stdin='{"a": 1}').returncode == 0
    assert read_all(target) == {"old": 1, "a": 1}
    assert run("load", target, "--replace", stdin='{"b": 2}').returncode == 0
    assert read_all(target) == {"b": 2}


def test_load_is_one_transaction(tmp_path: Path) -> None:
    target = tmp_path / "s.csv"
    target.write_text("key,value\nkept,yes\n")
    before = target.read_bytes()
    result = run("load", target, stdin='{"a": "fine", "b": 2}')
    assert_one_line_error(result, 2, "key 'b'", "str values only")
    assert target.read_bytes() == before
    fresh = tmp_path / "new.csv"
    assert run("load", fresh, stdin='{"a": "fine", "b": 2}').returncode == 2
    assert not fresh.exists()
    assert not [p for p in tmp_path.iterdir() if "convert" in p.name]


def test_load_from_a_terminal_explains_itself(tmp_path: Path) -> None:
    main, child = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "persistdict", "load", tmp_path / "s.json"],
            stdin=child,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.close(child)
        os.close(main)
    assert_one_line_error(result, 2, "reads a JSON object from stdin", "< backup.json")
    assert not (tmp_path / "s.json").exists()


def test_load_refuses_input_that_is_not_an_object(tmp_path: Path) -> None:
    target = tmp_path / "s.json"
    assert_one_line_error(run("load", target, stdin="[1, 2]"), 2, "JSON list", "object")
    assert_one_line_error(run("load", target, stdin='{"a": '), 2, "not valid JSON")
    assert not target.exists()


# convert -------------------------------------------------------------------------------------


def test_convert_between_backends_in_a_pipe_prints_only_the_summary(tmp_path: Path) -> None:
    data = {f"k{i}": [i, str(i)] for i in range(3000)}
    (tmp_path / "a.json").write_text(json.dumps(data))
    result = run("convert", tmp_path / "a.json", tmp_path / "b.db", "--dst-table", "t")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "\r" not in result.stderr
    assert re.fullmatch(
        r"copied 3000 keys from json '.*a\.json' to sqlite '.*b\.db' table 't'"
        r" in [\d.]+s( \([\d,]+ keys/s\))?\n",  # a rate only for copies of 1 s or more
        result.stderr,
    )
    assert read_all(tmp_path / "b.db", table="t") == data
    assert run("convert", tmp_path / "a.json", tmp_path / "c.json", "-q").stderr == ""


def test_convert_shows_progress_on_a_terminal(tmp_path: Path) -> None:
    with persistdict.open(tmp_path / "a.db") as d:
        d.update({f"k{i}": i for i in range(5000)})
    main, child = pty.openpty()
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "persistdict",
                "convert",
                tmp_path / "a.db",
                tmp_path / "b.json",
            ],
            stderr=child,
            stdout=subprocess.PIPE,
            timeout=60,
        )
        os.close(child)
        child = -1
        chunks = []
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if child != -1:
            os.close(child)
        os.close(main)
    shown = b"".join(chunks).decode()
    assert proc.returncode == 0
    assert "of 5,000 keys" in shown  # no rate: this copy takes less than the second it needs
    assert "\r" in shown
    assert "copied 5000 keys" in shown


def test_convert_refuses_a_filled_destination(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"a": 1}')
    (tmp_path / "b.json").write_text('{"b": 2}')
    before = (tmp_path / "b.json").read_bytes()
    result = run("convert", tmp_path / "a.json", tmp_path / "b.json")
    assert_one_line_error(result, 3, "already holds 1 key;", "--replace", "--merge")
    assert (tmp_path / "b.json").read_bytes() == before
    assert run("convert", tmp_path / "a.json", tmp_path / "b.json", "--merge").returncode == 0
    assert read_all(tmp_path / "b.json") == {"a": 1, "b": 2}


def test_convert_from_sqlitedict_needs_trust_pickle(tmp_path: Path) -> None:
    src = tmp_path / "old.sqlite"
    with sqlitedict.SqliteDict(str(src)) as d:
        d["cfg"] = {"root": "/srv"}
        d["tags"] = {"a"}
        d.commit()
    dst = tmp_path / "new.db"
    result = run("convert", src, dst)
    assert_one_line_error(result, 3, "pickle", "runs code", "--trust-pickle")
    assert not dst.exists()
    result = run("convert", src, dst, "--from", "sqlitedict", "--trust-pickle")
    assert_one_line_error(result, 2, "key 'tags'", "--on-error skip")
    assert not dst.exists()
    result = run("convert", src, dst, "--trust-pickle", "--on-error", "skip")
    assert result.returncode == 0, result.stderr
    assert "skipped 1: 'tags'" in result.stderr
    assert read_all(dst) == {"cfg": {"root": "/srv"}}


def test_convert_from_shelve_and_permadict(tmp_path: Path) -> None:
    with shelve.open(str(tmp_path / "shelf")) as sh:
        sh["a"] = [1, 2]
    result = run("convert", tmp_path / "shelf", tmp_path / "s.json", "--trust-pickle")
    assert result.returncode == 0, result.stderr
    assert "from shelve" in result.stderr
    assert read_all(tmp_path / "s.json") == {"a": [1, 2]}
    (tmp_path / "AppState.txt").write_text("user,ada\ntheme,dark\n")
    result = run("convert", tmp_path / "AppState.txt", tmp_path / "p.db", "--from", "permadict")
    assert result.returncode == 0, result.stderr
    assert read_all(tmp_path / "p.db") == {"user": "ada", "theme": "dark"}


def test_convert_serializer_option_applies_to_the_destination(tmp_path: Path) -> None:
    with shelve.open(str(tmp_path / "shelf")) as sh:
        sh["tags"] = {"a", "b"}
    dst = tmp_path / "d.db"
    result = run("convert", tmp_path / "shelf", dst, "--trust-pickle", "--serializer", "pickle")
    assert result.returncode == 0, result.stderr
    assert read_all(dst, serializer="pickle") == {"tags": {"a", "b"}}


def test_convert_of_a_truncated_source_leaves_no_destination(tmp_path: Path) -> None:
    (tmp_path / "old.json").write_text('{"a": "1", "b": "{\\"x\\"')
    result = run("convert", tmp_path / "old.json", tmp_path / "new.db", "--from", "persistdict-0")
    assert_one_line_error(result, 1, "old.json", "not valid JSON")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]


def test_convert_help_says_how_kinds_are_detected() -> None:
    result = run("convert", "--help")
    assert result.returncode == 0
    for kind in ("sqlitedict", "shelve", "diskcache", "permadict", "persistdict-0"):
        assert kind in result.stdout
    assert "exactly the schema sqlitedict creates" in result.stdout
    assert "--trust-pickle" in result.stdout


# check and info ------------------------------------------------------------------------------


def test_check_passes_a_good_file_and_fails_a_broken_one(tmp_path: Path) -> None:
    good = tmp_path / "good.db"
    with persistdict.open(good) as d:
        d.update({f"k{i}": "v" * 100 for i in range(2000)})
    result = run("check", good)
    assert result.returncode == 0
    assert result.stdout.startswith("ok: sqlite")
    assert "2000 keys" in result.stdout

    broken_json = tmp_path / "bad.json"
    broken_json.write_text('{"a": 1,')
    result = run("check", broken_json)
    assert result.returncode == 1
    assert result.stdout.startswith("broken: ")
    assert "bad.json" in result.stdout
    assert broken_json.read_text() == '{"a": 1,'

    raw = good.read_bytes()
    truncated = tmp_path / "truncated.db"
    truncated.write_bytes(raw[: len(raw) // 2])
    result = run("check", truncated)
    assert result.returncode == 1, result
    assert "broken" in result.stdout


def test_check_finds_a_value_that_does_not_decode(tmp_path: Path) -> None:
    import sqlite3

    target = tmp_path / "d.db"
    with persistdict.open(target) as d:
        d["fine"] = 1
    cx = sqlite3.connect(target)
    cx.execute("INSERT INTO items VALUES ('bad', '{not json')")
    cx.commit()
    cx.close()
    result = run("check", target)
    assert result.returncode == 1
    assert "key 'bad'" in result.stdout


def test_info_shows_backend_keys_size_and_durability(tmp_path: Path) -> None:
    target = tmp_path / "d.db"
    with persistdict.open(target, table="users") as d:
        d.update({"a": 1, "b": 2})
    result = run("info", target, "--table", "users")
    assert result.returncode == 0, result.stderr
    facts = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert facts["backend"] == "sqlite"
    assert facts["table"] == "users"
    assert facts["keys"] == "2"
    assert facts["size"] == f"{os.path.getsize(target):,} bytes"
    assert "synchronous" in facts["durability"]
    (tmp_path / "s.json").write_text('{"x": 1}')
    facts_json = json.loads(run("info", tmp_path / "s.json", "--json").stdout)
    assert facts_json["backend"] == "json"
    assert facts_json["keys"] == 1
    assert facts_json["size"] == 8
    assert "atomically" in facts_json["durability"]


def test_info_on_a_missing_table_names_the_tables_there(tmp_path: Path) -> None:
    target = tmp_path / "d.db"
    with persistdict.open(target, table="users") as d:
        d["a"] = 1
    before = target.read_bytes()
    assert_one_line_error(
        run("info", target, "--table", "usres"), 2, "no table 'usres'", "its tables: users"
    )
    assert target.read_bytes() == before


# Help, errors, exit codes, docs ----------------------------------------------------------------

COMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


def test_every_command_is_there() -> None:
    assert (
        sorted(["get", "set", "del", "keys", "dump", "load", "convert", "check", "info"])
        == COMMANDS
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = run(command, "--help")
    assert result.returncode == 0
    assert re.search(rf"^\s+persistdict {command} ", result.stdout, re.MULTILINE), result.stdout
    assert "exit codes:" in result.stdout


def test_exit_codes_are_documented_in_the_main_help() -> None:
    result = run("--help")
    assert result.returncode == 0
    for code in EXIT_CODES:
        assert re.search(rf"^\s+{code}\s", result.stdout, re.MULTILINE)


def test_usage_error_exits_2_and_debug_shows_a_traceback(tmp_path: Path) -> None:
    result = run("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
    missing = tmp_path / "missing.json"
    quiet = run("get", missing, "k")
    assert "Traceback" not in quiet.stderr
    loud = run("--debug", "get", missing, "k")
    assert loud.returncode != 0
    assert "Traceback" in loud.stderr
    assert "FileNotFoundError" in loud.stderr
    assert "Traceback" in run("get", missing, "k", "--debug").stderr


def test_readme_documents_every_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Command line", 1)
    assert len(section) == 2, "README.md needs a '## Command line' section"
    body = section[1].split("\n## ", 1)[0]
    for command in COMMANDS:
        assert re.search(rf"persistdict {command}\b", body), f"README lacks `persistdict {command}`"
    for code in EXIT_CODES:
        assert re.search(rf"\|\s*`?{code}`?\s*\|", body), f"README lacks exit code {code}"


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "persistdict"
    if not script.exists():
        pytest.skip(f"no console script beside {sys.executable} (not installed with pip)")
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == persistdict.__version__


def test_interrupted_convert_leaves_no_destination(tmp_path: Path) -> None:
    import signal
    import sqlite3
    import time

    src = tmp_path / "big.sqlite"
    with sqlitedict.SqliteDict(str(src)):
        pass  # sqlitedict's own table; rows are added below in one fast batch
    cx = sqlite3.connect(src)
    rows = ((f"key_{i}", sqlitedict.encode({"i": i})) for i in range(300_000))
    cx.executemany("INSERT INTO unnamed VALUES (?, ?)", rows)
    cx.commit()
    cx.close()
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "persistdict", "convert", src, out / "new.db", "--trust-pickle"],
        stderr=subprocess.PIPE,
        text=True,
    )
    # Interrupt once the copy is being written: its file exists in the scratch folder.
    deadline = time.monotonic() + 30
    while not list(out.glob(".new.db.persistdict-convert-*/new.db")):
        assert proc.poll() is None, "the convert ended before it could be interrupted"
        assert time.monotonic() < deadline, "the convert never started writing"
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    dst = str(out / "new.db")
    assert stderr == f"persistdict: error: interrupted (SIGINT); nothing was written to {dst!r}\n"
    assert list(out.iterdir()) == []


def test_convert_into_lmdb_then_info_and_check(tmp_path: Path) -> None:
    pytest.importorskip("lmdb")
    (tmp_path / "a.json").write_text('{"a": 1, "b": [2]}')
    target = tmp_path / "env.lmdb"
    assert run("convert", tmp_path / "a.json", target, "-q").returncode == 0
    assert read_all(target) == {"a": 1, "b": [2]}
    facts = json.loads(run("info", target, "--json").stdout)
    assert facts["backend"] == "lmdb"
    assert facts["keys"] == 2
    assert facts["size"] == sum(p.stat().st_size for p in target.iterdir())
    assert "LMDB transaction" in facts["durability"]
    assert run("check", target).returncode == 0
    result = run("convert", tmp_path / "a.json", target)
    assert_one_line_error(result, 3, "already holds 2 keys")
