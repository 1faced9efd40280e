"""LMDB backend: the shared suite, plus map growth, shared environments and processes."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict import LockedError, PersistDict
from persistdict.testing import MappingConformance
from tests.backends.test_sqlite import (  # noqa: F401 (fixtures)
    SmallDisk,
    open_as,
    read_as,
    read_only_mount,
    root_owned_folder,
    small_disk,
)
from tests.concurrency.harness import run_in_fork
from tests.helpers import (
    STRESS,
    acknowledged_before_kill,
    check_a_client_killed_in_a_transaction_blocks_no_one,
    check_fork_child_uses_the_dict,
    increment_concurrently,
    subprocess_env,
)


class TestLmdb(MappingConformance):
    backend_name = "lmdb"

    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        return persistdict.open(folder / "data.lmdb", **options)


class TestLmdbTinyMap(MappingConformance):
    """A 32 KiB map to start with: every test makes it grow, inside transactions too."""

    backend_name = "lmdb"

    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        return persistdict.open(f"lmdb:///{folder}/tiny.lmdb?map_size=32768", **options)


def _map_size(d: PersistDict) -> int:
    size: int = d.backend._shared.env.info()["map_size"]  # type: ignore[attr-defined]
    return size


def test_the_map_grows_instead_of_failing(tmp_path: Path) -> None:
    big = "x" * 5000
    with persistdict.open(tmp_path / "g.lmdb", map_size=32768) as d:
        d.update({f"u{i}": big for i in range(200)})  # one batch, about 1 MB
        grown = _map_size(d)
        assert grown > 32768
        with d.transaction():
            for i in range(400):  # fills the map mid-block: replayed on a larger one
                d[f"t{i}"] = big
            d["n"] = len(d)
            with d.transaction():
                d["inner"] = True
        assert _map_size(d) > grown
    with persistdict.open(tmp_path / "g.lmdb", "r") as d:
        assert len(d) == 602
        assert d["n"] == 600
        assert d["t399"] == big


def test_keys_are_plain_utf8_and_the_empty_key_is_0xff(tmp_path: Path) -> None:
    import lmdb

    with persistdict.open(tmp_path / "k.lmdb", table="t") as d:
        d["é"] = 1
        d[""] = 2
    env = lmdb.open(str(tmp_path / "k.lmdb"), max_dbs=4)
    with env.begin(db=env.open_db(b"t")) as txn:
        assert dict(txn.cursor()) == {"é".encode(): b"1", b"\xff": b"2"}
    env.close()


def test_keys_past_511_bytes_are_refused_clearly(tmp_path: Path) -> None:
    with persistdict.open(tmp_path / "k.lmdb") as d:
        with pytest.raises(ValueError, match="limited to 511"):
            d["é" * 300] = 1
        with pytest.raises(ValueError, match="limited to 511"):
            d.update({"fine": 1, "k" * 600: 2})
        assert len(d) == 0


def test_tables_of_one_environment_share_its_handle(tmp_path: Path) -> None:
    target = tmp_path / "app.lmdb"
    with (
        persistdict.open(target, table="users") as users,
        persistdict.open(target, table="sessions") as sessions,
    ):
        users["alice"] = 1
        sessions["s1"] = "alice"
        assert users.backend._shared is sessions.backend._shared  # type: ignore[attr-defined]
        with users.transaction():
            users["bob"] = 2
            with pytest.raises(LockedError, match="one write transaction"):
                sessions["s2"] = "bob"  # would deadlock on LMDB's writer lock
        assert dict(sessions) == {"s1": "alice"}
        assert dict(users) == {"alice": 1, "bob": 2}


def test_missing_environment_and_read_only(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="flag='c'"):
        persistdict.open(tmp_path / "none.lmdb", "r")
    with persistdict.open(tmp_path / "e.lmdb", table="a") as d:
        d["x"] = 1
    with pytest.raises(FileNotFoundError, match="has no table 'never_written'; its tables: a"):
        persistdict.open(tmp_path / "e.lmdb", "r", table="never_written")


def test_processes_incrementing_in_transactions_end_exact(tmp_path: Path) -> None:
    target = str(tmp_path / "c.lmdb")
    increment_concurrently(target, {"sync": False}, 150 * STRESS)
    with persistdict.open(target) as d:
        assert d["n"] == 3 * 150 * STRESS


def test_a_killed_process_loses_no_committed_write(tmp_path: Path) -> None:
    target = str(tmp_path / "kill.lmdb")
    done = acknowledged_before_kill(target, {}, 100 * STRESS)
    with persistdict.open(target) as d:
        assert [i for i in done if d.get(f"k{i}") != i] == []


def test_fork_child_reopens_the_environment(tmp_path: Path) -> None:
    check_fork_child_uses_the_dict(lambda **o: persistdict.open(tmp_path / "f.lmdb", **o))


# A reader in another process: holds a read transaction until told to check that LMDB still
# counts its reader slot (a cleared slot would let writers reuse the pages it is reading).
_READER = """
import os, sys, lmdb
env = lmdb.open(sys.argv[1], max_dbs=128)
txn = env.begin(env.open_db(b"items"))
assert txn.get(b"k") is not None
print("reading", flush=True)
sys.stdin.readline()
sys.exit(0 if f" {os.getpid()} " in env.readers() else 3)
"""


def test_a_forked_child_leaves_the_parents_reader_slot_alone(tmp_path: Path) -> None:
    # The parent keeps its last read transaction for the next read, and with it a slot in
    # lock.mdb. The child's copy of that transaction must not free the slot when the child
    # closes its inherited handle: the parent would then fail to read, or clear the slot of
    # whichever process took it next.
    target = str(tmp_path / "forked.lmdb")
    with persistdict.open(target, sync=False) as d:
        d["k"] = 1
        assert d["k"] == 1  # leaves the read transaction for the next read
        assert run_in_fork(d.close) == 0  # the child closes its inherited handle
        reader = subprocess.Popen(
            [sys.executable, "-c", _READER, target],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
        )
        try:
            assert reader.stdout is not None
            assert reader.stdin is not None
            assert reader.stdout.readline() == "reading\n"
            for _ in range(3):
                assert d["k"] == 1
                assert "k" in d
                assert len(d) == 1
            reader.stdin.write("check\n")
            reader.stdin.flush()
            assert reader.wait(timeout=30) == 0
        finally:
            reader.kill()
            reader.wait()


def test_a_process_killed_in_a_transaction_blocks_no_one(tmp_path: Path) -> None:
    # LMDB's writer lock is a robust mutex: the next writer recovers it from a dead owner.
    target = str(tmp_path / "dead.lmdb")
    persistdict.open(target).close()
    check_a_client_killed_in_a_transaction_blocks_no_one(target, {}, within=3)


_GROW = """
import sys, persistdict
with persistdict.open(sys.argv[1], map_size=32768) as d:
    d.update({f"big{i}": "x" * 5000 for i in range(300)})
"""


def test_a_map_grown_by_another_process_is_adopted(tmp_path: Path) -> None:
    target = str(tmp_path / "shared.lmdb")
    with persistdict.open(target, map_size=32768) as d:
        d["mine"] = 1
        subprocess.run([sys.executable, "-c", _GROW, target], env=subprocess_env(), check=True)
        with d.transaction():
            d["n"] = len(d)
        d["after"] = d["big299"]
        assert d["n"] == 301
        assert _map_size(d) > 32768


# Damaged environments. LMDB maps data.mdb and trusts its meta pages: a truncated file used to
# kill the process with SIGBUS, so every case runs in a child process and must end with a
# CorruptError naming the folder, never a signal.

_OPEN_AND_READ = """
import sys, persistdict
try:
    with persistdict.open(sys.argv[1], flag=sys.argv[2]) as d:
        print(len(d), sum(len(v) for v in d.values()), len(list(d)))
except persistdict.CorruptError as exc:
    print("CorruptError:", exc)
"""


def _damaged_copy(tmp_path: Path, name: str) -> tuple[Path, int]:
    source = tmp_path / "good.lmdb"
    if not source.exists():
        with persistdict.open(source) as d:
            d.update({f"k{i}": "v" * 100 for i in range(5000)})
    copy = tmp_path / name
    copy.mkdir()
    for part in ("data.mdb", "lock.mdb"):
        (copy / part).write_bytes((source / part).read_bytes())
    return copy, (copy / "data.mdb").stat().st_size


@pytest.mark.parametrize("flag", ["r", "c", "w"])
@pytest.mark.parametrize("keep", ["all but one page", "half", "the meta pages", "one page", "0"])
def test_a_truncated_environment_is_a_corrupt_error_not_a_crash(
    tmp_path: Path, flag: str, keep: str
) -> None:
    env, size = _damaged_copy(tmp_path, "cut.lmdb")
    cut = {
        "all but one page": size - 4096,
        "half": size // 2,
        "the meta pages": 8192,
        "one page": 4096,
        "0": 0,
    }[keep]
    os.truncate(env / "data.mdb", cut)
    done = subprocess.run(
        [sys.executable, "-c", _OPEN_AND_READ, str(env), flag],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr  # not -7 (SIGBUS)
    assert done.stdout.startswith("CorruptError:"), done.stdout
    assert str(env) in done.stdout
    assert (env / "data.mdb").stat().st_size == cut  # left untouched


def test_the_cli_reports_a_truncated_environment_as_damage(tmp_path: Path) -> None:
    env, size = _damaged_copy(tmp_path, "cut.lmdb")
    os.truncate(env / "data.mdb", size // 2)
    for command in ("check", "dump", "keys", "info"):
        done = subprocess.run(
            [sys.executable, "-m", "persistdict", command, str(env)],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            timeout=60,
        )
        assert done.returncode == 1, (command, done.returncode, done.stderr)
        assert "damaged" in done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        if command != "check":  # check reports on stdout; the others print no data
            assert done.stdout == ""


_FLIP_TRIALS = """
import os, random, shutil, sys, persistdict
source, work, trials = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(20261128)
size = os.path.getsize(os.path.join(source, "data.mdb"))
for trial in range(trials):
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(source, work)
    with open(os.path.join(work, "data.mdb"), "r+b") as f:
        for _ in range(rng.choice([1, 8, 64])):
            pos = rng.randrange(size)
            f.seek(pos)
            byte = f.read(1)[0]
            f.seek(pos)
            f.write(bytes([byte ^ (1 << rng.randrange(8))]))
    try:
        with persistdict.open(work, flag="r") as d:
            n = len(d)
            for key, value in d.items():
                pass
        print(trial, "read", n, flush=True)
    except persistdict.CorruptError as exc:
        assert work in str(exc), exc
        print(trial, "corrupt", flush=True)
    except Exception as exc:
        print(trial, "other", type(exc).__name__, exc, flush=True)
        sys.exit(3)
"""


def test_bit_flips_give_the_data_or_a_corrupt_error(tmp_path: Path) -> None:
    """Random bit flips anywhere in data.mdb: each read gives data or CorruptError naming the
    folder; never a raw lmdb or UnicodeDecodeError, never a crash. (LMDB does not checksum
    pages, so a flip inside a value can go unnoticed by the engine; the serializer then
    reports what it can't decode.)"""
    source, _ = _damaged_copy(tmp_path, "src.lmdb")
    trials = 40 * STRESS
    done = subprocess.run(
        [sys.executable, "-c", _FLIP_TRIALS, str(source), str(tmp_path / "w.lmdb"), str(trials)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert done.returncode == 0, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    outcomes = [line.split()[1] for line in done.stdout.splitlines()]
    assert len(outcomes) == trials
    assert "corrupt" in outcomes  # the fuzz reaches the checks


# Reads. get, `in` and len() run without the dict's lock, in a short read transaction each
# (py-lmdb renews its last one); these pin what that must keep.

_WRITE_AND_WAIT = """
import sys, persistdict
with persistdict.open(sys.argv[1], sync=False) as d:
    d["k"] = int(sys.argv[2])
    d[f"new{sys.argv[2]}"] = True
"""


def test_each_read_sees_what_another_process_committed_before_it(tmp_path: Path) -> None:
    target = str(tmp_path / "seen.lmdb")
    with persistdict.open(target, sync=False) as d:
        d["mine"] = 0
        assert "k" not in d
        for round_ in (1, 2, 3):
            command = [sys.executable, "-c", _WRITE_AND_WAIT, target, str(round_)]
            subprocess.run(command, env=subprocess_env(), check=True, timeout=60)
            assert d["k"] == round_
            assert f"new{round_}" in d
            assert len(d) == 2 + round_
            assert sorted(d)[-1] == f"new{round_}"


def test_len_follows_every_commit_whoever_makes_it(tmp_path: Path) -> None:
    # len() keeps the count of the snapshot it last read; any commit must make it count again.
    target = str(tmp_path / "count.lmdb")
    with (
        persistdict.open(target, sync=False) as d,
        persistdict.open(target, sync=False) as twin,  # same table, same handle
        persistdict.open(target, table="other", sync=False) as other,
    ):
        d.update({"a": 1, "b": 2})
        assert len(d) == len(d) == 2
        twin["c"] = 3
        assert len(d) == 3
        other["x"] = 0  # another table's commit: the count is unchanged, and still right
        assert len(d) == 3
        del twin["a"]
        assert len(d) == 2
        with d.transaction():
            d["d"] = 4
            assert len(d) == 3  # this block's own write, not yet committed
        assert len(d) == len(twin) == 3
        with pytest.raises(RuntimeError), d.transaction():
            d["e"] = 5
            raise RuntimeError
        assert len(d) == 3
        command = [sys.executable, "-c", _WRITE_AND_WAIT, target, "1"]
        subprocess.run(command, env=subprocess_env(), check=True, timeout=60)
        assert len(d) == 5  # "k" and "new1" from another process
        twin.clear()
        assert len(d) == 0
        assert len(other) == 1


def test_a_read_from_another_thread_waits_for_a_transaction_block(tmp_path: Path) -> None:
    import threading

    seen: list[object] = []
    with persistdict.open(tmp_path / "wait.lmdb", sync=False) as d:

        def reader() -> None:
            seen.append(d.get("k"))
            seen.append("k" in d)
            seen.append(len(d))

        with d.transaction():
            d["k"] = 1
            thread = threading.Thread(target=reader)
            thread.start()
            thread.join(0.3)
            assert thread.is_alive()  # waits: does not use this thread's write transaction
            assert seen == []
        thread.join(10)
    assert seen == [1, True, 1]


def test_threads_read_while_another_grows_the_map(tmp_path: Path) -> None:
    # Growing remaps the file: a read running meanwhile in another thread would crash.
    import threading
    import time

    errors: list[BaseException] = []
    stop = time.monotonic() + 2
    with persistdict.open(tmp_path / "grow.lmdb", map_size=32768, sync=False) as d:
        d["fixed"] = "f" * 100
        writing = True

        def read() -> None:
            try:
                while writing and time.monotonic() < stop + 5:
                    assert d["fixed"] == "f" * 100
                    assert "fixed" in d
                    assert len(d) >= 1
                    assert sum(1 for _ in d) >= 1
            except BaseException as exc:
                errors.append(exc)

        readers = [threading.Thread(target=read) for _ in range(3)]
        for thread in readers:
            thread.start()
        start = _map_size(d)
        i = 0
        # At least 2 s of writes, and until the map grew 8x; bounded in count (a fast machine
        # writes 20k values in 2 s).
        while (time.monotonic() < stop or _map_size(d) < start * 8) and i < 20_000:
            d[f"big{i}"] = "x" * 3000  # single writes: each finds the map full now and then
            i += 1
        writing = False
        for thread in readers:
            thread.join(30)
        assert errors == []
        assert _map_size(d) >= start * 8
        assert len(d) == i + 1


def test_closing_while_another_thread_reads_gives_closed_error(tmp_path: Path) -> None:
    import threading

    from persistdict import ClosedError

    errors: list[BaseException] = []
    reads = 0
    d = persistdict.open(tmp_path / "close.lmdb", sync=False)
    d["k"] = 1

    def read() -> None:
        nonlocal reads
        try:
            for _ in range(10_000_000):
                assert d["k"] == 1
                assert "k" in d
                reads += 1
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    while reads < 100 and thread.is_alive():
        pass
    d.close()
    thread.join(30)
    assert len(errors) == 1, errors
    assert isinstance(errors[0], ClosedError), errors
    assert "is closed; open it again" in str(errors[0])


def test_iterating_holds_one_page_of_keys_at_a_time(tmp_path: Path) -> None:
    import tracemalloc

    with persistdict.open(tmp_path / "flat.lmdb", sync=False) as d:
        d.update({f"key_{i:06d}": i for i in range(30_000)})
        tracemalloc.start()
        try:
            assert sum(1 for _ in d) == 30_000
            keys_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            assert sum(v for _, v in d.items()) == sum(range(30_000))
            items_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    # 30,000 keys as str objects take about 2 MB; a page of them about 70 KB.
    assert keys_peak < 400_000, keys_peak
    assert items_peak < 600_000, items_peak


def test_a_reader_who_may_not_write_the_lock_file_is_told_why_and_what_to_do(
    root_owned_folder: Path,  # noqa: F811 (the fixture imported above)
) -> None:
    """LMDB readers register in ``lock.mdb``; a reader who may not write it was told the
    environment "can't be written", which it never asked to do."""
    target = root_owned_folder / "data.lmdb"
    with persistdict.open(target) as d:
        d["k"] = 1
    target.chmod(0o755)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    answer = read_as(target, nobody=True)
    assert answer["error"] == "PermissionError", answer
    message = answer["message"]
    assert f"can't read {str(target)!r}" in message
    assert "lock.mdb" in message
    assert "write access" in message
    assert "can't be written" not in message
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before


@pytest.mark.parametrize("flag", ["c", "w"])
@pytest.mark.parametrize("name", ["data.lmdb", "data.db"])
def test_a_writer_who_may_not_write_gets_read_only_error_as_on_sqlite(
    root_owned_folder: Path,  # noqa: F811 (the fixture imported above)
    name: str,
    flag: str,
) -> None:
    """LMDB said PermissionError where SQLite says ReadOnlyError, for the same cause."""
    target = root_owned_folder / name
    with persistdict.open(target) as d:
        d["k"] = 1
    files = target.iterdir() if target.is_dir() else [target]
    before = {p.name: p.read_bytes() for p in files}
    answer = open_as(target, flag, nobody=True)
    assert answer["error"] == "ReadOnlyError", answer
    assert answer["message"].startswith(f"{str(target)!r} can't be written: "), answer
    files = target.iterdir() if target.is_dir() else [target]
    assert {p.name: p.read_bytes() for p in files} == before
    assert read_as(target, nobody=False)["items"] == {"k": 1}


def test_a_writer_on_a_read_only_file_system_gets_read_only_error(
    read_only_mount: tuple[Path, Callable[[], None]],  # noqa: F811 (the fixture imported above)
) -> None:
    """py-lmdb's bare ``lmdb.Error`` (EROFS) got out untranslated."""
    folder, make_read_only = read_only_mount
    target = folder / "data.lmdb"
    with persistdict.open(target) as d:
        d["k"] = 1
    make_read_only()
    for flag in ("c", "w"):
        with pytest.raises(persistdict.ReadOnlyError, match=r"can't be written: .*Read-only file"):
            persistdict.open(target, flag)
    with persistdict.open(target, "r") as d:
        assert dict(d) == {"k": 1}


def test_every_write_to_a_read_only_dict_is_read_only_error(tmp_path: Path) -> None:
    target = tmp_path / "data.lmdb"
    with persistdict.open(target) as d:
        d.update({"a": 1, "b": 2})
    with persistdict.open(target, "r") as d:
        writes: dict[str, Callable[[], object]] = {
            "set": lambda: d.__setitem__("c", 3),
            "delete": lambda: d.__delitem__("a"),
            "clear": d.clear,
            "update": lambda: d.update({"c": 3}),
            "pop": lambda: d.pop("a"),
            "popitem": d.popitem,
            "setdefault": lambda: d.setdefault("c", 3),
            "transaction": lambda: d.transaction().__enter__(),
        }
        for name, write in writes.items():
            with pytest.raises(persistdict.ReadOnlyError) as caught:
                write()
            assert str(caught.value) == (
                f"lmdb {str(target)!r} table 'items' was opened read-only (flag='r'); open it "
                "with flag='w' or 'c' to change it"
            ), name
        assert dict(d) == {"a": 1, "b": 2}


def test_a_full_disk_is_an_os_error_naming_the_environment_and_loses_nothing(
    small_disk: SmallDisk,  # noqa: F811 (the fixture imported above)
) -> None:
    """py-lmdb's own ``lmdb.DiskError`` named no file, said nothing of what to do, and was not
    an ``OSError``, so code that handles a full disk (``except OSError``) missed it."""
    target = small_disk.folder / "data.lmdb"
    acknowledged = {}
    with persistdict.open(target) as d:
        with pytest.raises(OSError, match="No space left") as caught:
            for i in range(1000):  # bounded: 2 MB of values on a 1 MiB disk
                d[f"k{i}"] = "v" * 2000
                acknowledged[f"k{i}"] = "v" * 2000
        assert caught.value.errno == errno.ENOSPC
        assert repr(str(target)) in str(caught.value)
        assert "free some space and retry" in str(caught.value).lower()
        assert str(caught.value).count(str(target)) == 1
        assert acknowledged
    with persistdict.open(target, flag="r") as reader:
        assert dict(reader) == acknowledged


@pytest.mark.parametrize("flag", ["r", "w"])
def test_a_missing_table_is_an_error_naming_the_tables_not_an_empty_dict(
    tmp_path: Path, flag: str
) -> None:
    """As on SQLite and PostgreSQL (issue 15): a mistyped ``table=`` read as an empty dict, so
    ``persistdict dump data.lmdb --table evnts > backup.json`` wrote an empty backup."""
    target = tmp_path / "data.lmdb"
    with persistdict.open(target, table="events") as d:
        d["k"] = 1
    with pytest.raises(FileNotFoundError, match="has no table 'evnts'") as caught:
        persistdict.open(target, flag=flag, table="evnts")
    assert "its tables: events" in str(caught.value)
    with pytest.raises(FileNotFoundError):  # and flag="w" did not create it
        persistdict.open(target, flag="r", table="evnts")
    result = subprocess.run(
        [sys.executable, "-m", "persistdict", "dump", str(target), "--table", "evnts"],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(),
    )
    assert (result.returncode, result.stdout) == (2, ""), result
    assert "no table 'evnts'" in result.stderr
    assert "events" in result.stderr
    with persistdict.open(target, flag="r", table="events") as d:
        assert dict(d) == {"k": 1}


def test_an_unknown_write_operation_is_refused_not_taken_for_clear(tmp_path: Path) -> None:
    """Any tag but put, del and many fell through to dropping the table's contents."""
    with persistdict.open(tmp_path / "data.lmdb") as d:
        d.update({"a": 1, "b": 2})
        backend: Any = d.backend
        for ops in ([("bogus",)], [("put", b"c", b"3"), ("Drop",)]):
            with pytest.raises(ValueError, match="unknown LMDB write operation"):
                backend._put_ops(ops)
            with pytest.raises(ValueError, match="unknown LMDB write operation"), d.transaction():
                backend._put_ops(ops)
        assert dict(d) == {"a": 1, "b": 2}


_READ_K = """
import sys, persistdict
with persistdict.open(sys.argv[1], "r") as d:
    assert d["k"] == "before"
"""

# Another process inside transaction() for as long as the test needs: LMDB's own writer lock
# would make every other writer wait for it without a limit.
_HOLDER = """
import sys, persistdict
d = persistdict.open(sys.argv[1])
with d.transaction():
    d["held"] = "by the other process"
    print("inside", flush=True)
    sys.stdin.readline()
"""


@pytest.mark.parametrize("how", ["argument", "url", "zero"])
def test_a_writer_waits_for_another_processs_transaction_only_up_to_timeout(
    tmp_path: Path, how: str
) -> None:
    target = str(tmp_path / "busy.lmdb")
    with persistdict.open(target) as d:
        d["k"] = "before"
    wait = 0.0 if how == "zero" else 0.4
    # Opened before the other process's block begins: opening to write waits for it too.
    opened = persistdict.open(
        f"lmdb:///{target}?timeout={wait}" if how == "url" else target,
        **({} if how == "url" else {"timeout": wait}),
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, target],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    try:
        assert holder.stdout is not None
        assert holder.stdin is not None
        assert holder.stdout.readline() == "inside\n"
        # A reader in another process never waits.
        reading = [sys.executable, "-c", _READ_K, target]
        assert subprocess.run(reading, env=subprocess_env(), check=False).returncode == 0
        with opened as d:
            assert d["k"] == "before"  # reads go on meanwhile
            for write in (lambda: d.__setitem__("k", "after"), lambda: d.update(x=1)):
                start = time.monotonic()
                with pytest.raises(LockedError) as caught:
                    write()
                waited = time.monotonic() - start
                assert wait <= waited < wait + 5
                message = str(caught.value)
                assert message.startswith(f"lmdb {target!r} table 'items' is being written")
                assert f"waited {wait:g}s" in message
                assert "timeout=" in message
            start = time.monotonic()
            with pytest.raises(LockedError, match="being written by another process"):
                persistdict.open(target, table="other", timeout=wait)
            assert time.monotonic() - start < wait + 5
            with pytest.raises(LockedError), d.transaction():
                d["k"] = "in a block"
            holder.stdin.write("done\n")
            holder.stdin.flush()
            assert holder.wait(timeout=30) == 0
            d["k"] = "after"  # the lock is free again
        with persistdict.open(target, "r") as d:
            assert dict(d) == {"k": "after", "held": "by the other process"}
    finally:
        holder.kill()
        holder.wait()


def test_a_child_forked_inside_a_transaction_waits_for_its_parent(tmp_path: Path) -> None:
    # The child inherits the descriptor of the parent's writer lock; it must not pass through
    # it (nor drop it for the parent) but wait like any other process.
    target = str(tmp_path / "forked.lmdb")
    with persistdict.open(target, timeout=0.3) as d:
        d["k"] = "before"

        def child() -> None:
            try:
                with persistdict.open(target, timeout=0.3) as mine:
                    mine["k"] = "child"
            except LockedError:
                os._exit(7)

        with d.transaction():
            d["k"] = "parent"
            assert run_in_fork(child) == 7
            d["other"] = "still ours"
        assert dict(d) == {"k": "parent", "other": "still ours"}
        assert run_in_fork(child) == 0  # once the block is over
    with persistdict.open(target, "r") as d:
        assert d["k"] == "child"
