from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict import PersistDict
from persistdict.backends.sqlite import SqliteBackend
from persistdict.testing import MappingConformance
from tests.helpers import subprocess_env


def read_all(target: Path, **options: Any) -> dict[str, Any]:
    with persistdict.open(target, "r", **options) as d:
        return dict(d.items())


class TestSqlite(MappingConformance):
    backend_name = "sqlite"

    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        return persistdict.open(folder / "data.db", **options)


class TestSqliteBatched(MappingConformance):
    backend_name = "sqlite"

    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        return persistdict.open(folder / "data.db", table="batched", commit_every=7, **options)


# Table names and paths ------------------------------------------------------------------------


@pytest.mark.parametrize("table", ["sqlite_master", "sqlite_items", "SQLITE_x", "Sqlite_"])
def test_table_names_reserved_by_sqlite_are_refused_before_any_io(
    tmp_path: Path, table: str
) -> None:
    target = tmp_path / "data.db"
    with pytest.raises(ValueError, match=f"table name {table!r}.*reserved"):
        persistdict.open(target, table=table)
    with pytest.raises(ValueError, match="reserved"):
        SqliteBackend(target, table=table)
    assert list(tmp_path.iterdir()) == []


def test_a_name_that_only_contains_sqlite_is_a_table_like_any_other(tmp_path: Path) -> None:
    with persistdict.open(tmp_path / "data.db", table="my_sqlite_stuff") as d:
        d["k"] = 1
    assert read_all(tmp_path / "data.db", table="my_sqlite_stuff") == {"k": 1}


@pytest.mark.parametrize("name", ["report%41.db", "a%2fb.db", "what?.db", "x#1.db", "100%.db"])
def test_read_only_open_finds_a_path_with_uri_characters(tmp_path: Path, name: str) -> None:
    # Unescaped in a file: URI, "report%41.db" names "reportA.db": that file exists too,
    # holding something else, so reading the wrong file shows.
    decoy = urllib.parse.unquote(name)
    if decoy != name and "/" not in decoy:
        with persistdict.open(tmp_path / decoy) as other:
            other["which"] = "the wrong file"
    with persistdict.open(tmp_path / name) as d:
        d["which"] = name
    with persistdict.open(tmp_path / name, "r") as d:
        assert dict(d.items()) == {"which": name}
        assert d.backend.check() == []
    names = {p.name for p in tmp_path.iterdir()}
    assert names <= {name, decoy, name + "-wal", name + "-shm"}


# A missing table is an error, as a missing file is ---------------------------------------------


@pytest.mark.parametrize("flag", ["r", "w"])
def test_a_missing_table_is_an_error_naming_the_tables_there(tmp_path: Path, flag: str) -> None:
    target = tmp_path / "big.db"
    for table in ("events", "users"):
        with persistdict.open(target, table=table) as d:
            d["k"] = table
    before = target.read_bytes()
    with pytest.raises(FileNotFoundError) as caught:
        persistdict.open(target, flag, table="evnts")
    message = str(caught.value)
    assert f"{str(target)!r} has no table 'evnts'; its tables: events, users" in message
    assert "flag='c'" in message
    assert target.read_bytes() == before  # flag "w" did not create the table
    with persistdict.open(target, "r", table="EVENTS") as d:  # SQLite's names ignore case
        assert dict(d.items()) == {"k": "events"}


def test_a_file_without_tables_says_so(tmp_path: Path) -> None:
    target = tmp_path / "empty.db"
    target.touch()  # an empty file is a valid empty database
    with pytest.raises(FileNotFoundError, match="has no table 'items'; it has no tables"):
        persistdict.open(target, "r")
    with persistdict.open(target, "c") as d:
        assert len(d) == 0


# Faults: a full disk in the middle of a batch or a transaction -----------------------------------


@dataclass
class SmallDisk:
    """A 1 MiB tmpfs that a test fills up and frees again."""

    folder: Path

    def fill(self) -> None:
        fd = os.open(self.folder / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            with pytest.raises(OSError, match="No space left"):
                for _ in range(1025):  # bounded: 1 MiB in 1 KiB writes, and one more
                    os.write(fd, b"\0" * 1024)
        finally:
            os.close(fd)

    def free(self) -> None:
        (self.folder / "filler").unlink()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"can't mount a tmpfs (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield SmallDisk(folder)
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


BIG = "x" * 3_000_000  # larger than SQLite's page cache: written to the WAL at once


@pytest.mark.parametrize("fault", ["write", "nth", "flush", "close"])
def test_a_batch_rolled_back_by_a_full_disk_is_kept_and_committed_on_retry(
    small_disk: SmallDisk, fault: str
) -> None:
    target = small_disk.folder / "data.db"
    d = persistdict.open(target, commit_every=21 if fault == "nth" else 1000)
    try:
        d["first"] = 0
        d.flush()
        small_disk.fill()
        for i in range(20):
            d[f"k{i}"] = i  # acknowledged, pending in the batch (in SQLite's page cache)
        with pytest.raises(OSError, match="disk is full") as caught:
            if fault == "write":
                d["big"] = BIG  # larger than the cache: written at once, and fails
            elif fault == "nth":
                d["big"] = 21  # the batch's 21st write: its COMMIT fails
            else:
                getattr(d, fault)()  # the COMMIT fails
        # Either way SQLite rolled the whole batch back.
        assert caught.value.errno == errno.ENOSPC
        message = str(caught.value)
        assert str(target) in message
        assert "the 20 earlier writes of the commit_every batch are kept" in message
        assert not d.closed  # a failed close() leaves the dict open, to be retried
        small_disk.free()
        assert d["k7"] == 7  # reads see the acknowledged writes
        assert len(d) == 21
        assert "big" not in d  # the call that raised changed nothing
        getattr(d, "close" if fault == "close" else "flush")()
    finally:
        d.close()
    assert read_all(target) == {"first": 0, **{f"k{i}": i for i in range(20)}}


def test_no_write_commits_outside_a_transaction_that_sqlite_rolled_back(
    small_disk: SmallDisk,
) -> None:
    target = small_disk.folder / "data.db"
    with persistdict.open(target) as d:
        d["before"] = 1
        small_disk.fill()
        aborted = pytest.raises(persistdict.Error, match=r"rolled back this transaction\(\) block")
        with aborted, d.transaction():
            d["a"] = 1
            with pytest.raises(OSError, match="rolled back the whole transaction"):
                d["big"] = BIG
            small_disk.free()  # a write alone would now succeed, and commit by itself
            with pytest.raises(persistdict.Error, match="none of its writes were kept"):
                d["b"] = 2
            with pytest.raises(persistdict.Error, match="rolled back"):
                del d["before"]
            with pytest.raises(persistdict.Error, match="rolled back"):
                d.update({"c": 3, "d": 4})
            with pytest.raises(persistdict.Error, match="rolled back"):
                d.clear()
            with pytest.raises(persistdict.Error, match="rolled back"), d.transaction():
                pass
        assert dict(d.items()) == {"before": 1}
        assert len(d) == 1
        d["after"] = 2  # the block is over: writes work again
    assert read_all(target) == {"before": 1, "after": 2}


def test_a_transaction_ended_by_a_full_disk_raises_that_error(small_disk: SmallDisk) -> None:
    target = small_disk.folder / "data.db"
    with persistdict.open(target) as d:
        d["before"] = 1
        small_disk.fill()
        # The disk's error, not "cannot rollback - no transaction is active".
        with pytest.raises(OSError, match="disk is full") as caught, d.transaction():
            d["a"] = 1
            with d.transaction():
                d["big"] = BIG
        assert caught.value.errno == errno.ENOSPC
        small_disk.free()
        assert dict(d.items()) == {"before": 1}
    assert read_all(target) == {"before": 1}


@pytest.mark.parametrize("change", ["clear", "delete", "update"])
def test_len_is_right_after_a_transaction_whose_commit_fails(
    small_disk: SmallDisk, change: str
) -> None:
    target = small_disk.folder / "data.db"
    with persistdict.open(target) as d:
        d.update({"a": 1, "b": 2})
        assert len(d) == 2
        small_disk.fill()
        failed = pytest.raises(OSError, match="none of the transaction\\(\\) block's writes")
        with failed, d.transaction():
            d["c"] = 3
            assert len(d) == 3  # the count is cached from here on
            if change == "clear":
                d.clear()
            elif change == "delete":
                del d["a"]
                del d["b"]
            else:
                d.update({f"n{i}": i for i in range(50)})
        assert len(d) == 2
        small_disk.free()
        assert len(d) == 2
        assert dict(d.items()) == {"a": 1, "b": 2}
        d["z"] = 26
        assert len(d) == 3
    assert read_all(target) == {"a": 1, "b": 2, "z": 26}


def test_len_is_right_after_an_update_whose_commit_fails(small_disk: SmallDisk) -> None:
    target = small_disk.folder / "data.db"
    with persistdict.open(target) as d:
        d.update({"a": 1, "b": 2})
        assert len(d) == 2
        small_disk.fill()
        with pytest.raises(OSError, match="disk is full"):
            d.update({f"n{i}": i for i in range(50)})
        assert len(d) == 2
        small_disk.free()
    assert read_all(target) == {"a": 1, "b": 2}


# Readers who may not write: a root-owned folder, a read-only file system ------------------------

_OPENER = """
import json, sys, persistdict
try:
    with persistdict.open(sys.argv[1], sys.argv[2], **json.loads(sys.argv[3])) as d:
        if sys.argv[2] != "r":
            d["written"] = 1
        print(json.dumps({"items": dict(d.items()), "repr": repr(d)}))
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
"""

_WRITER_KILLED_AFTER = """
import sys, time, persistdict
d = persistdict.open(sys.argv[1])
d["live"] = "in the -wal only"
print("written", flush=True)
time.sleep(60)
"""


def read_as(target: Path, *, nobody: bool, **options: Any) -> dict[str, Any]:
    """Open ``target`` read-only in another process, as uid 65534 if ``nobody``."""
    return open_as(target, "r", nobody=nobody, **options)


def open_as(target: Path, flag: str, *, nobody: bool, **options: Any) -> dict[str, Any]:
    """Open ``target`` with ``flag`` in another process, as uid 65534 if ``nobody``, and
    unless the flag is ``"r"`` store ``written``: its items, or the error's name and text."""
    who = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if nobody else []
    command = [*who, sys.executable, "-c", _OPENER, str(target), flag, json.dumps(options)]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=60, env=subprocess_env(), check=True
    )
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def leave_a_live_wal(target: Path) -> None:
    """A writer killed with SIGKILL: its last write is only in the -wal, beside the -shm."""
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER_KILLED_AFTER, str(target)],
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == "written\n"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
    assert Path(f"{target}-wal").stat().st_size > 0


@pytest.fixture
def root_owned_folder() -> Iterator[Path]:
    """A folder uid 65534 may read but not write (under /tmp: pytest's own is 0700)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to read as another user")
    folder = Path(tempfile.mkdtemp(prefix="persistdict-ro-", dir="/tmp"))
    try:
        folder.chmod(0o755)
        yield folder
    finally:
        shutil.rmtree(folder)


def test_a_reader_who_may_not_write_the_folder_reads_while_a_writer_has_it_open(
    root_owned_folder: Path,
) -> None:
    target = root_owned_folder / "data.db"
    with persistdict.open(target) as d:
        d["k"] = 1
        answer = read_as(target, nobody=True)
        assert answer["items"] == {"k": 1}, answer
        assert "immutable" not in answer["repr"]


def test_a_reader_who_may_not_write_the_folder_reads_what_a_killed_writer_left(
    root_owned_folder: Path,
) -> None:
    target = root_owned_folder / "data.db"
    with persistdict.open(target) as d:
        d["k"] = 1
    leave_a_live_wal(target)
    assert read_as(target, nobody=True)["items"] == {"k": 1, "live": "in the -wal only"}


def test_a_reader_who_may_not_write_the_folder_is_told_why_and_what_to_do(
    root_owned_folder: Path,
) -> None:
    target = root_owned_folder / "data.db"
    with persistdict.open(target) as d:  # closed cleanly: no -wal, no -shm
        d["k"] = 1
    answer = read_as(target, nobody=True)
    assert answer["error"] == "PermissionError", answer
    message = answer["message"]
    assert f"can't read {str(target)!r}: it is a SQLite database in WAL mode" in message
    assert f"may not create data.db-wal and data.db-shm in {str(root_owned_folder)!r}" in message
    assert "immutable=True" in message
    assert sorted(p.name for p in root_owned_folder.iterdir()) == ["data.db"]
    # The way out the message offers, for a database nothing writes meanwhile:
    answer = read_as(target, nobody=True, immutable=True)
    assert answer["items"] == {"k": 1}
    assert "immutable" in answer["repr"]
    assert sorted(p.name for p in root_owned_folder.iterdir()) == ["data.db"]


@pytest.fixture
def read_only_mount() -> Iterator[tuple[Path, Callable[[], None]]]:
    """A small tmpfs, and a function that remounts it read-only (under /tmp, for uid 65534)."""
    outer = Path(tempfile.mkdtemp(prefix="persistdict-media-", dir="/tmp"))
    outer.chmod(0o755)
    folder = outer / "media"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(folder)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        shutil.rmtree(outer)
        pytest.skip(f"can't mount a tmpfs (needs root): {mounted.stderr.decode().strip()}")

    def make_read_only() -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)

    try:
        yield folder, make_read_only
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)
        shutil.rmtree(outer)


@pytest.mark.parametrize("nobody", [False, True], ids=["root", "nobody"])
@pytest.mark.parametrize("left", ["closed", "wal"])
def test_a_database_on_a_read_only_file_system_is_read(
    read_only_mount: tuple[Path, Callable[[], None]], left: str, nobody: bool
) -> None:
    if nobody and shutil.which("setpriv") is None:
        pytest.skip("needs setpriv to read as another user")
    folder, make_read_only = read_only_mount
    target = folder / "data.db"
    with persistdict.open(target) as d:
        d["k"] = 1
    expected: dict[str, Any] = {"k": 1}
    if left == "wal":
        leave_a_live_wal(target)
        expected["live"] = "in the -wal only"
    make_read_only()
    with pytest.raises(OSError, match="Read-only file system"):
        Path(f"{target}-x").touch()
    answer = read_as(target, nobody=nobody)
    assert answer["items"] == expected, answer
    # Cleanly closed, the file is read as unchanging, and repr says so; with a -wal it can't
    # be (immutable would miss what the -wal holds), and SQLite reads the -wal and -shm.
    assert ("immutable" in answer["repr"]) == (left == "closed")


def test_immutable_is_only_for_reading(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="immutable=True is for reading"):
        persistdict.open(tmp_path / "data.db", immutable=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Connection.setlimit() is Python 3.11+")
def test_a_key_or_value_beyond_sqlites_length_limit_is_a_value_error(tmp_path: Path) -> None:
    # SQLite's limit is 1e9 bytes; lowering it on this connection tests the same path fast.
    with persistdict.open(tmp_path / "d.db") as d:
        d["a"] = 1
        d.backend._conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1000)  # type: ignore[attr-defined]
        for key, value in (("big", "x" * 2000), ("k" * 2000, 1)):
            with pytest.raises(ValueError, match=f"can't store key '{key[:10]}.*length limit"):
                d[key] = value
        with pytest.raises(ValueError, match="length limit"):
            d.update({"u1": 1, "u2": "y" * 5000})
        assert dict(d) == {"a": 1}
    with persistdict.open(tmp_path / "d.db", "r") as d:
        assert dict(d) == {"a": 1}


def test_the_cli_tells_a_reader_who_may_not_write_the_folder_what_to_do_in_its_words(
    root_owned_folder: Path,
) -> None:
    """The command line has no ``immutable=True``: its remedy must be one a shell user has."""
    target = root_owned_folder / "data.db"
    with persistdict.open(target) as d:
        d["k"] = 1
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    for command in (["get", str(target), "k"], ["dump", str(target)], ["check", str(target)]):
        result = subprocess.run(
            [*nobody, sys.executable, "-m", "persistdict", *command],
            capture_output=True,
            text=True,
            timeout=60,
            env=subprocess_env(),
        )
        assert result.returncode != 0, result
        assert result.stdout == "", result
        assert f"may not create data.db-wal and data.db-shm in {str(root_owned_folder)!r}" in (
            result.stderr
        )
        assert "copy the file somewhere writable" in result.stderr
        assert "=True" not in result.stderr, result.stderr
    assert sorted(p.name for p in root_owned_folder.iterdir()) == ["data.db"]
