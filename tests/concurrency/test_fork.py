"""A dict opened before ``os.fork()`` and used in the child: reconnects or fails clearly.

SQLite dicts reconnect in the child; whatever both processes do, the file stays whole and no
commit is lost. A writer of a file with one writer at a time (json, csv, pickle, dbm) refuses
changes in the child with a clear error and the file is left as the parent wrote it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import persistdict
from persistdict import ClosedError, LockedError
from persistdict.testing import MappingConformance
from tests.concurrency.harness import (
    case_id,
    cases_where,
    integrity,
    one_writer_at_a_time,
    run_in_fork,
    shares_writers,
    stress,
    transaction_in_another_thread,
)
from tests.helpers import subprocess_env

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")

# Stores with one writer at a time refuse changes in a forked child; shared stores reconnect
# there (memory keeps nothing to share and is in neither).
SINGLE_WRITER = cases_where(one_writer_at_a_time)
SHARED = cases_where(shares_writers)


def test_sqlite_dict_used_in_parent_and_child_stays_whole(tmp_path: Path) -> None:
    path = tmp_path / "data.db"
    n = 200 * stress()
    d = persistdict.open(path)
    d["before"] = 1

    def use(who: str) -> None:
        for i in range(n):
            d[f"{who}{i}"] = i
            with d.transaction():
                d["n"] = d.get("n", 0) + 1

    assert run_in_fork(lambda: use("child"), lambda: use("parent")) == 0
    d.close()
    assert integrity(path) == ["ok"]
    with persistdict.open(path, "r") as d:
        assert d["n"] == 2 * n
        assert len(d) == 2 + 2 * n
        assert all(d[f"child{i}"] == d[f"parent{i}"] == i for i in range(n))


def test_child_commits_survive_the_parent_closing(tmp_path: Path) -> None:
    # Regression: the child's new connection took the inherited SQLite lock table for its own
    # locks; the parent, closing its last connection, saw no other process and deleted the
    # WAL the child was still committing to: most of the child's writes vanished.
    path = tmp_path / "data.db"
    d = persistdict.open(path)
    d["parent"] = 1
    to_parent, to_child = os.pipe(), os.pipe()

    def child() -> None:
        for i in range(300):
            d[f"c{i}"] = i
            if i == 10:  # the parent closes now, in the middle of the child's writes
                os.write(to_parent[1], b"1")
                assert os.read(to_child[0], 1) == b"1"

    def parent() -> None:
        assert os.read(to_parent[0], 1) == b"1"
        d.close()
        os.write(to_child[1], b"1")

    try:
        assert run_in_fork(child, parent) == 0
    finally:
        for fd in (*to_parent, *to_child):
            os.close(fd)
    assert integrity(path) == ["ok"]
    with persistdict.open(path, "r") as r:
        assert sum(1 for k in r if k.startswith("c")) == 300


def test_pending_batch_is_committed_before_fork(tmp_path: Path) -> None:
    path = tmp_path / "data.db"
    d = persistdict.open(path, commit_every=1000)
    d["parent-pending"] = 1  # not committed yet

    def child() -> None:
        d["child"] = 2
        d.close()

    assert run_in_fork(child) == 0
    d["parent-after"] = 3
    d.close()
    assert integrity(path) == ["ok"]
    with persistdict.open(path, "r") as r:
        assert dict(r) == {"parent-pending": 1, "child": 2, "parent-after": 3}


def test_fork_inside_a_transaction_fails_clearly_in_the_child(tmp_path: Path) -> None:
    path = tmp_path / "data.db"
    d = persistdict.open(path)

    def child() -> None:
        assert "parent" not in d  # it reads what is committed; the parent's block is not
        with pytest.raises(LockedError, match=r"inside a transaction .* when this process forked"):
            d["child"] = 1
        with pytest.raises(LockedError, match="when this process forked"):
            d.update({"child": 1})

    with d.transaction():
        d["parent"] = 1
        assert run_in_fork(child) == 0
        d["parent2"] = 2
    d.close()
    assert integrity(path) == ["ok"]
    with persistdict.open(path, "r") as r:
        assert dict(r) == {"parent": 1, "parent2": 2}


def test_children_exiting_normally_with_inherited_connections(tmp_path: Path) -> None:
    # Interpreter shutdown in a child must not commit or roll back what it inherited; a child
    # forked inside a transaction reads the file but gets a clear error on writing it.
    script = textwrap.dedent(
        """
        import os, sys, persistdict

        def wait(pid):
            assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0

        path = sys.argv[1]
        idle = persistdict.open(path, table="idle")
        busy = persistdict.open(path, table="busy")
        idle["a"] = 1
        pid = os.fork()
        if pid == 0:
            idle["child"] = 3
            sys.exit(0)  # a normal exit: atexit, module teardown, garbage collection
        wait(pid)
        with busy.transaction():
            busy["b"] = 2
            pid = os.fork()
            if pid == 0:
                assert idle["a"] == 1
                try:
                    idle["refused"] = 5
                except persistdict.LockedError as exc:
                    assert "when this process forked" in str(exc), exc
                else:
                    raise AssertionError("a write in the child went through")
                sys.exit(0)  # unwinds the parent's `with busy.transaction()` in the child
            busy["c"] = 4
        wait(pid)
        idle.close()
        busy.close()
        """
    )
    path = tmp_path / "data.db"
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert integrity(path) == ["ok"]
    with persistdict.open(path, "r", table="idle") as r:
        assert dict(r) == {"a": 1, "child": 3}
    with persistdict.open(path, "r", table="busy") as r:
        assert dict(r) == {"b": 2, "c": 4}


@pytest.mark.parametrize("case", SINGLE_WRITER, ids=[case_id(c) for c in SINGLE_WRITER])
def test_single_writer_in_a_forked_child_fails_clearly_and_file_is_intact(
    case: type[MappingConformance], tmp_path: Path
) -> None:
    d = case().open_dict(tmp_path)
    d.update({"a": "1", "b": "2"})
    d.flush()

    def files_now() -> dict[str, bytes]:
        # Not SQLite's -shm (dbm.sqlite3 on 3.13+): a WAL index in which every read, the
        # child's included, marks what it reads; it holds no data.
        return {
            p.name: p.read_bytes()
            for p in tmp_path.iterdir()
            if p.is_file() and not p.name.endswith("-shm")
        }

    files = files_now()

    def child() -> None:
        assert d["a"] == "1"  # reading the inherited copy is fine
        for change in (
            lambda: d.__setitem__("x", "9"),
            lambda: d.__delitem__("a"),
            lambda: d.update({"y": "9"}),
            d.flush,
        ):
            with pytest.raises(ClosedError, match="opened for writing in the parent process"):
                change()
        d.close()  # drops the child's copy without writing

    assert run_in_fork(child) == 0
    assert files_now() == files
    d["c"] = "3"
    d.close()
    with case().open_dict(tmp_path, flag="r") as r:
        assert dict(r) == {"a": "1", "b": "2", "c": "3"}


def test_lock_held_by_another_thread_at_fork_does_not_hang_the_child() -> None:
    d = persistdict.open("memory://")

    def child() -> None:
        d["child"] = 1  # would wait forever for a thread that does not exist here
        assert dict(d) == {"child": 1}

    with transaction_in_another_thread(d):
        assert run_in_fork(child, timeout=10) == 0
    d.close()


@pytest.mark.parametrize("case", SHARED, ids=[case_id(c) for c in SHARED])
def test_shared_store_used_in_parent_and_child(
    case: type[MappingConformance], tmp_path: Path
) -> None:
    conformance = case()
    d = conformance.open_dict(tmp_path)
    n = 100 * stress()

    def use(who: str) -> None:
        for i in range(n):
            d[f"{who}{i}"] = conformance.value(i)
            with d.transaction():
                d["n"] = d.get("n", 0) + 1
        d.flush()  # the child ends with os._exit: nothing is saved for it at exit

    try:
        assert run_in_fork(lambda: use("child"), lambda: use("parent")) == 0
        assert d["n"] == 2 * n
        assert all(d[f"child{i}"] == d[f"parent{i}"] == conformance.value(i) for i in range(n))
    finally:
        d.close()
    with conformance.open_dict(tmp_path, flag="r") as r:
        assert len(r) == 1 + 2 * n
