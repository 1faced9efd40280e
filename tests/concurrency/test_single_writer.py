"""Stores with one writer at a time (json, csv, pickle files; dbm): the writer lock.

A second writer waits up to ``timeout`` and then gets ``LockedError`` naming the file and the
holder's pid; readers open alongside and see whole snapshots, and later flushes after
``refresh()``; a killed writer leaves nothing that blocks the next open.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

import persistdict
from persistdict import LockedError, PersistDict
from persistdict.locking import FileLock, lock_path_for
from persistdict.testing import MappingConformance
from tests.concurrency.harness import (
    Writer,
    case_id,
    cases_where,
    check_whole,
    generation,
    one_writer_at_a_time,
    stress,
)

# Only the stores with one writer at a time: the others are not collected here.
CASES = cases_where(one_writer_at_a_time)
IDS = [case_id(c) for c in CASES]
# Of those, the snapshot files (readers of dbm read the live file).
SNAPSHOT_CASES = cases_where(lambda b: one_writer_at_a_time(b) and b.stores_objects)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_second_writer_gets_locked_error_naming_file_and_holder(
    case: type[MappingConformance], tmp_path: Path
) -> None:
    case().open_dict(tmp_path).close()
    writer = Writer(case, tmp_path)
    try:
        before = _files(tmp_path)
        started = time.monotonic()
        with pytest.raises(LockedError) as caught:
            case().open_dict(tmp_path, timeout=0.5)
        waited = time.monotonic() - started
        assert 0.5 <= waited < 3.0
        message = str(caught.value)
        assert f"by process {writer.pid}" in message
        assert "waited 0.5s" in message
        assert str(tmp_path) in message
        assert _files(tmp_path) == before  # the refused writer changed nothing
    finally:
        writer.finish()
    with case().open_dict(tmp_path, timeout=0) as d:  # free again: no wait at all
        assert dict(d) == generation(2)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_second_writer_waits_for_the_first_to_close(
    case: type[MappingConformance], tmp_path: Path
) -> None:
    first = case().open_dict(tmp_path)
    first["a"] = "1"
    opened: list[PersistDict] = []
    waiter = threading.Thread(target=lambda: opened.append(case().open_dict(tmp_path)))
    waiter.start()
    time.sleep(0.3)
    assert not opened  # still waiting for the lock
    first["b"] = "2"
    first.close()
    waiter.join(timeout=10)
    (second,) = opened
    with second:
        assert dict(second) == {"a": "1", "b": "2"}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_writer_waiting_on_a_new_file_keeps_what_the_first_saved(
    case: type[MappingConformance], tmp_path: Path
) -> None:
    # Regression: a writer that found no file decided to create an empty one before it had
    # the lock; the writer it waited for created and filled the file meanwhile, and that was
    # then overwritten with the empty one.
    made = tmp_path / "made"
    made.mkdir()
    with case().open_dict(made) as d:
        d.update({"x": "1", "y": "2"})
        name = Path(d.backend.path).name  # type: ignore[attr-defined]
    folder = tmp_path / "new"
    folder.mkdir()
    holder = FileLock(folder / name)
    holder.acquire()  # another writer, in the middle of creating the file
    opened: list[PersistDict] = []
    waiter = threading.Thread(target=lambda: opened.append(case().open_dict(folder)))
    waiter.start()
    time.sleep(0.3)  # the waiter has looked for the file (not there yet) and is waiting
    assert not opened
    for made_file in made.iterdir():
        if not made_file.name.startswith("."):
            shutil.copy2(made_file, folder / made_file.name)
    holder.release()
    waiter.join(timeout=10)
    with opened[0] as second:
        assert dict(second) == {"x": "1", "y": "2"}


@pytest.mark.parametrize(
    ("backend", "name"),
    [("json", "state.json"), ("csv", "state.csv"), ("pickle", "state.bin"), ("dbm", "state")],
    ids=["json", "csv", "pickle", "dbm"],
)
def test_same_process_second_writer_is_told_so(tmp_path: Path, backend: str, name: str) -> None:
    # The default 10 s timeout: the second open in the holding thread must not wait it out.
    with persistdict.open(tmp_path / name, backend=backend) as d:
        d["a"] = "1"
        for target in (tmp_path / name, f"{tmp_path}/./{name}"):
            started = time.monotonic()
            with pytest.raises(LockedError) as caught:
                persistdict.open(target, backend=backend)
            assert time.monotonic() - started < 1
            message = str(caught.value)
            assert repr(str(target)) in message
            assert "already open for writing in this thread" in message
        assert d["a"] == "1"
    with persistdict.open(tmp_path / name, backend=backend) as again:  # released on close
        assert dict(again) == {"a": "1"}


def test_another_thread_of_the_process_waits_for_the_holder(tmp_path: Path) -> None:
    first = persistdict.open(tmp_path / "state.json")
    first["a"] = 1
    opened: list[PersistDict] = []
    waiter = threading.Thread(
        target=lambda: opened.append(persistdict.open(tmp_path / "state.json", timeout=20))
    )
    waiter.start()
    time.sleep(0.3)
    assert not opened  # still waiting, as another process would
    first.close()
    waiter.join(timeout=10)
    with opened[0] as second:
        assert dict(second) == {"a": 1}


def test_another_thread_gets_locked_error_naming_this_process(tmp_path: Path) -> None:
    with persistdict.open(tmp_path / "state.json") as d:
        d["a"] = 1
        errors: list[BaseException] = []

        def second() -> None:
            try:
                persistdict.open(tmp_path / "state.json", timeout=0.1)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(timeout=10)
        assert isinstance(errors[0], LockedError)
        assert re.search(r"by process \d+ \(this process: another dict", str(errors[0]))
        assert d["a"] == 1


@pytest.mark.parametrize("case", SNAPSHOT_CASES, ids=[case_id(c) for c in SNAPSHOT_CASES])
def test_reader_sees_whole_snapshots_and_later_flushes_after_refresh(
    case: type[MappingConformance], tmp_path: Path
) -> None:
    case().open_dict(tmp_path).close()
    gens = 300 * stress()
    writer = Writer(case, tmp_path, gens=gens)
    try:
        started = time.monotonic()
        reader = case().open_dict(tmp_path, flag="r", timeout=0)  # no wait for the writer
        assert time.monotonic() - started < 2
        assert dict(reader) == generation(1)
        writer.proceed()  # generations 2..gens, as fast as the writer can flush
        seen = [1]
        while seen[-1] < gens:
            reader.refresh()
            g = check_whole(dict(reader))
            assert g >= seen[-1], "refresh() went back in time"
            seen.append(g)
            with case().open_dict(tmp_path, flag="r") as fresh:  # a fresh open, too
                assert check_whole(dict(fresh)) >= g
        writer.wait_done()
        assert len(set(seen)) > 2  # it did read while the writer was flushing
        reader.close()
    finally:
        writer.finish()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_killed_writer_leaves_nothing_that_blocks_the_next_open(
    case: type[MappingConformance], tmp_path: Path
) -> None:
    with case().open_dict(tmp_path) as d:
        path = d.backend.path  # type: ignore[attr-defined]
    writer = Writer(case, tmp_path)
    writer.kill()  # SIGKILL while it holds the lock, after flushing generation 1
    assert lock_path_for(path).exists()  # left behind, and harmless:
    started = time.monotonic()
    with case().open_dict(tmp_path, timeout=0) as d:
        assert time.monotonic() - started < 2
        assert dict(d) == generation(1)
        d["after"] = "crash"
    with case().open_dict(tmp_path, flag="r") as d:
        assert d["after"] == "crash"
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_missing_folder_is_named_and_nothing_is_created(tmp_path: Path) -> None:
    for name in ("state.json", "shelf"):
        target = tmp_path / "missing" / name
        with pytest.raises(FileNotFoundError, match=r"No such folder .*missing' to hold") as e:
            persistdict.open(target, backend="dbm" if name == "shelf" else "auto")
        assert str(e.value).endswith(f"(create it first): {str(target)!r}")
        assert e.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.name == "nt", reason="flock")
def test_a_stale_pid_in_the_lock_file_is_not_named(tmp_path: Path) -> None:
    import fcntl

    path = tmp_path / "state.json"
    lock_file = lock_path_for(path)
    lock_file.write_text("999999999")  # left by a holder long gone; this one wrote nothing
    fd = os.open(lock_file, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(LockedError) as caught:
            persistdict.open(path, timeout=0)
        assert "by process" not in str(caught.value)
        assert str(caught.value).startswith(f"{str(path)!r} is locked for writing; waited 0s")
    finally:
        os.close(fd)
