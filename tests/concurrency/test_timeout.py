"""``timeout=``: how long a write waits for another process's lock before ``LockedError``."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import persistdict
from persistdict import LockedError
from persistdict.locking import DEFAULT_TIMEOUT


@pytest.fixture
def held(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the SQLite write lock on ``tmp_path / "data.db"``."""
    with persistdict.open(tmp_path / "data.db") as d:
        d["k"] = 1
    other = sqlite3.connect(tmp_path / "data.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    yield other
    if other.in_transaction:
        other.execute("ROLLBACK")
    other.close()


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda d: d.__setitem__("k", 2), id="set"),
        pytest.param(lambda d: d.update({"a": 1, "b": 2}), id="update"),
        pytest.param(lambda d: d.setdefault("new", 1), id="setdefault"),
        pytest.param(lambda d: d.pop("missing", None), id="pop"),
        pytest.param(lambda d: d.popitem(), id="popitem"),
        pytest.param(lambda d: d.transaction().__enter__(), id="transaction"),
    ],
)
def test_sqlite_write_waits_timeout_then_locked_error(
    tmp_path: Path, held: sqlite3.Connection, write: object
) -> None:
    # pop() of a missing key changes nothing, yet takes the write lock before it reads: every
    # read-modify-write does, so none ever has to upgrade a read lock (no deadlock).
    with persistdict.open(tmp_path / "data.db", timeout=0.3) as d:
        started = time.monotonic()
        with pytest.raises(LockedError) as caught:
            write(d)  # type: ignore[operator]
        assert 0.25 <= time.monotonic() - started < 3
        assert str(tmp_path / "data.db") in str(caught.value)
        assert "0.3s" in str(caught.value)
        assert d["k"] == 1  # reads go on while another process writes (WAL)
        assert dict(d) == {"k": 1}


def test_ordinary_contention_is_absorbed_by_the_wait(
    tmp_path: Path, held: sqlite3.Connection
) -> None:
    releaser = threading.Timer(0.3, lambda: held.execute("COMMIT"))
    releaser.start()
    with persistdict.open(tmp_path / "data.db") as d:  # the default timeout, 10 s
        started = time.monotonic()
        with d.transaction():
            d["k"] = d["k"] + 1
        assert time.monotonic() - started >= 0.2
        assert d["k"] == 2
    releaser.join()


@pytest.mark.parametrize(
    ("timeout", "error", "message"),
    [
        (-1, ValueError, "timeout must be a finite number of seconds >= 0, not -1"),
        (float("inf"), ValueError, "timeout must be a finite number of seconds >= 0, not inf"),
        (float("nan"), ValueError, "not nan"),
        ("5", TypeError, "timeout must be a number of seconds, not str"),
        (True, TypeError, "timeout must be a number of seconds, not bool"),
    ],
)
def test_bad_timeout_is_refused_before_any_io(
    tmp_path: Path, timeout: object, error: type[Exception], message: str
) -> None:
    for name in ("data.db", "state.json"):
        with pytest.raises(error, match=message):
            persistdict.open(tmp_path / name, timeout=timeout)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_timeout_reaches_the_backend_and_memory_ignores_it(tmp_path: Path) -> None:
    with persistdict.open(tmp_path / "data.db", timeout=2.5) as d:
        assert d.backend.timeout == 2.5  # type: ignore[attr-defined]
    with persistdict.open(tmp_path / "data.db") as d:
        assert d.backend.timeout == DEFAULT_TIMEOUT == 10.0  # type: ignore[attr-defined]
    with persistdict.open("memory://", timeout=1) as m:
        m["a"] = 1
        assert dict(m) == {"a": 1}


def test_sqlite_readers_do_not_wait_for_a_writer(tmp_path: Path, held: sqlite3.Connection) -> None:
    held.execute("UPDATE items SET value = '2' WHERE key = 'k'")  # not committed yet
    started = time.monotonic()
    with persistdict.open(tmp_path / "data.db", "r", timeout=0) as r:
        assert dict(r) == {"k": 1}  # the last committed version, at once
        assert len(r) == 1
    assert time.monotonic() - started < 1
    held.execute("COMMIT")
    with persistdict.open(tmp_path / "data.db", "r", timeout=0) as r:
        assert r["k"] == 2
