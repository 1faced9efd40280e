"""PostgreSQL: writes that wait for another client's transaction(), and the lock timeout."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict import LockedError, PersistDict
from tests.helpers import namespace, server_url


def _open(folder: Path, app: str = "", **options: Any) -> PersistDict:
    url = server_url("postgres")
    if app:
        url += ("&" if "?" in url else "?") + f"application_name={app}"
    return persistdict.open(url, table=namespace("postgres", folder), **options)


def _sql(query: str, *params: Any) -> list[Any]:
    import psycopg

    with psycopg.connect(server_url("postgres"), autocommit=True) as cx:
        cur = cx.execute(query, params)
        return cur.fetchall() if cur.description else []


def _wait_until_blocked(app: str, within: float = 5.0) -> bool:
    """Whether a connection named ``app`` is waiting for a lock, polled up to ``within`` s."""
    query = (
        "SELECT 1 FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if _sql(query, app):
            return True
        time.sleep(0.01)
    return False


# What each write does, and what the store must hold after it ran behind a block that inserted
# "a_new" (sorting first, for popitem) and left "old" alone.
_WRITES: dict[str, tuple[Callable[[PersistDict], Any], Any, dict[str, Any]]] = {
    "clear": (lambda d: d.clear(), None, {}),
    "del": (lambda d: d.__delitem__("a_new"), None, {"old": 0}),
    "pop": (lambda d: d.pop("a_new"), 1, {"old": 0}),
    "popitem": (lambda d: d.popitem(), ("a_new", 1), {"old": 0}),
    "setdefault": (lambda d: d.setdefault("a_new", 5), 1, {"a_new": 1, "old": 0}),
    "update": (
        lambda d: d.update({"a_new": 2, "more": 3}),
        None,
        {"a_new": 2, "old": 0, "more": 3},
    ),
    "set": (lambda d: d.__setitem__("a_new", 2), None, {"a_new": 2, "old": 0}),
}


@pytest.mark.parametrize("write", sorted(_WRITES))
def test_a_write_that_waited_for_a_transaction_sees_the_rows_it_committed(
    tmp_path: Path, write: str
) -> None:
    run, returns, after = _WRITES[write]
    app = f"pdtest_wait_{os.getpid()}_{write}"
    outcome: dict[str, Any] = {}

    def other_client() -> None:
        try:
            with _open(tmp_path, app) as other:
                outcome["returned"] = run(other)
        except BaseException as exc:  # reported by the assertion below
            outcome["raised"] = exc

    with _open(tmp_path) as d:
        d["old"] = 0
        thread = threading.Thread(target=other_client)
        with d.transaction():
            d["a_new"] = 1
            thread.start()
            assert _wait_until_blocked(app), "the other client's write did not wait for the block"
        thread.join(timeout=30)
        assert "raised" not in outcome, outcome.get("raised")
        assert outcome["returned"] == returns
        assert dict(d) == after
        assert len(d) == len(after)


def test_opening_with_flag_n_waits_for_a_transaction_and_empties_what_it_committed(
    tmp_path: Path,
) -> None:
    app = f"pdtest_wait_{os.getpid()}_flag_n"
    opened: list[PersistDict] = []
    with _open(tmp_path) as d:
        d["old"] = 0
        thread = threading.Thread(target=lambda: opened.append(_open(tmp_path, app, flag="n")))
        with d.transaction():
            d["a_new"] = 1
            thread.start()
            assert _wait_until_blocked(app), "flag='n' did not wait for the block"
        thread.join(timeout=30)
        opened[0].close()
        assert dict(d) == {}


def _hold_in_transaction(folder: Path, app: str, seconds: float) -> threading.Thread:
    """A client that keeps a transaction() open on the table for ``seconds``."""
    inside = threading.Event()

    def hold() -> None:
        with _open(folder, app) as d, d.transaction():
            d["held"] = 1
            inside.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold)
    thread.start()
    assert inside.wait(10)
    return thread


@pytest.mark.parametrize("timeout", [0, 0.0004])
def test_timeout_zero_or_under_a_millisecond_does_not_wait(tmp_path: Path, timeout: float) -> None:
    with _open(tmp_path, timeout=timeout) as d:
        holder = _hold_in_transaction(tmp_path, f"pdtest_hold_{os.getpid()}", 2.0)
        try:
            for attempt in (
                lambda: d.__setitem__("k", 1),
                lambda: d.__delitem__("held"),
                d.clear,
                lambda: d.update({"k": 1}),
                lambda: d.pop("held"),
            ):
                started = time.monotonic()
                with pytest.raises(LockedError, match="another client's transaction"):
                    attempt()
                assert time.monotonic() - started < 0.5
            started = time.monotonic()
            with pytest.raises(LockedError), d.transaction():
                pass
            assert time.monotonic() - started < 0.5
        finally:
            holder.join(timeout=30)
        d["k"] = 1  # the block is over: no wait needed
        assert dict(d) == {"held": 1, "k": 1}


def test_a_timeout_beyond_what_postgres_can_wait_opens_and_waits_its_longest(
    tmp_path: Path,
) -> None:
    # lock_timeout holds at most 2**31 - 1 ms (about 24.8 days).
    with _open(tmp_path, timeout=10**7) as d:
        d["a"] = 1
        cx = d.backend._conn  # type: ignore[attr-defined]
        setting = cx.execute("SHOW lock_timeout").fetchone()[0]
        assert setting == "2147483647ms"


@pytest.mark.parametrize("scheme", ["postgresql", "redis"])
@pytest.mark.parametrize("timeout", ["-1", "nan", "inf", "soon"])
def test_a_bad_timeout_in_the_url_is_refused_before_connecting(scheme: str, timeout: str) -> None:
    # Nothing listens on port 1: reaching the connection would raise ConnectionError instead.
    url = f"{scheme}://u:hunter2@127.0.0.1:1/{'test' if scheme == 'postgresql' else '0'}"
    with pytest.raises(ValueError, match=f"option timeout='{timeout}' is invalid") as info:
        persistdict.open(f"{url}?timeout={timeout}")
    assert "u:***@127.0.0.1:1" in str(info.value)
    assert "hunter2" not in str(info.value)


# A write that fails inside transaction() aborts PostgreSQL's transaction; if the caller catches
# the error and goes on, a COMMIT would silently roll the whole block back. Nothing may commit
# outside the block, every later write in it must raise, and the block must end with an error.


ROLLED_BACK = r"rolled the block back"


def _row_locked_by_another_client(table: str, key: str) -> Any:
    import psycopg

    other = psycopg.connect(server_url("postgres"))
    other.execute(f'SELECT 1 FROM "{table}" WHERE key = %s FOR UPDATE', (key,))
    return other  # holds the row lock until closed


@pytest.mark.parametrize("nested", [False, True], ids=["outer", "nested"])
def test_a_block_postgres_aborted_raises_on_and_keeps_nothing(tmp_path: Path, nested: bool) -> None:
    table = namespace("postgres", tmp_path)
    with _open(tmp_path, timeout=0.2) as d:
        d.update({"locked": 0, "kept": 0})
        other = _row_locked_by_another_client(table, "locked")
        try:
            with pytest.raises(persistdict.Error, match=ROLLED_BACK), d.transaction():
                d["before"] = 1
                with d.transaction() if nested else _no_block():
                    d["inner_before"] = 1
                    with pytest.raises(LockedError):
                        d["locked"] = 1  # waits for the other client's row lock
                    for write in (
                        lambda: d.__setitem__("after", 1),
                        lambda: d.update({"after2": 1}),
                        lambda: d.__delitem__("kept"),
                    ):
                        with pytest.raises(persistdict.Error, match=ROLLED_BACK):
                            write()
                if nested:  # the inner block ended with the error: the outer goes on
                    pytest.fail("the inner block must end with an error")
        finally:
            other.close()
        assert dict(d) == {"locked": 0, "kept": 0}
    with _open(tmp_path) as d:
        assert dict(d) == {"locked": 0, "kept": 0}


def test_after_an_aborted_inner_block_the_outer_block_can_go_on(tmp_path: Path) -> None:
    table = namespace("postgres", tmp_path)
    with _open(tmp_path, timeout=0.2) as d:
        d["locked"] = 0
        other = _row_locked_by_another_client(table, "locked")
        try:
            with d.transaction():
                d["outer"] = 1
                with pytest.raises(persistdict.Error, match=ROLLED_BACK), d.transaction():
                    d["inner"] = 1
                    with pytest.raises(LockedError):
                        d["locked"] = 1
                d["outer_after"] = 2
        finally:
            other.close()
    with _open(tmp_path) as d:
        assert dict(d) == {"locked": 0, "outer": 1, "outer_after": 2}


class _no_block:  # noqa: N801 - reads like a context manager in the test above
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
