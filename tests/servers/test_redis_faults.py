"""Redis: connections dropped at every step of a write, with the request or the reply lost.

redis-py sends a command again after a dropped connection; these tests check that no write
is repeated blindly (a delete whose reply was lost must not then raise KeyError), and that a
connection lost inside transaction() is reported as such, with nothing half-written.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict import PersistDict
from tests.helpers import REDIS_URL, namespace, server_url
from tests.servers.faults import OPERATIONS, check_whole, cut_at_every_step
from tests.servers.proxy import Lose, Proxy


def _kill_client_on(port: int) -> None:
    """CLIENT KILL ID the server's client for the connection from 127.0.0.1:``port``."""
    import redis

    raw = redis.Redis.from_url(server_url("redis"))
    try:
        for client in raw.client_list():
            if client["addr"] == f"127.0.0.1:{port}":
                raw.client_kill_filter(_id=client["id"])
    finally:
        raw.close()


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    # Not server_url(): that skips (or fails) the test, in its body, not in this fixture.
    with Proxy.in_front_of(REDIS_URL) as proxy:
        proxy.killer = _kill_client_on
        yield proxy


def _opener(url: str, folder: Path, **options: Any) -> Any:
    prefix = namespace("redis", folder)
    return lambda: persistdict.open(url, prefix=prefix, socket_timeout=5, **options)


@pytest.mark.parametrize("lose", ["reply", "request", "kill"])
@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_a_dropped_connection_at_any_step_leaves_the_hash_whole(
    proxy: Proxy, tmp_path: Path, name: str, lose: Lose
) -> None:
    url = proxy.url(server_url("redis"))
    operation = OPERATIONS[name]
    trials = cut_at_every_step(
        proxy, lose, operation, _opener(url, tmp_path), _opener(server_url("redis"), tmp_path)
    )
    check_whole(trials, operation, url)
    failed = [t for t in trials if t.error is not None]
    # redis-py repeats a command after a dropped connection, and every repeat is safe. The
    # operations that run as a transaction (WATCH/MULTI/EXEC) may instead end with an honest
    # "nothing was written" (redis-py won't repeat a command of a connection that was
    # watching keys), which is what docs/guarantees.md promises for them.
    if name not in ("pop", "popitem", "setdefault", "transaction"):
        assert failed == []
    else:
        assert [str(t.error) for t in failed if "nothing was written" not in str(t.error)] == []


def test_without_retries_a_lost_reply_is_an_honest_connection_error(
    proxy: Proxy, tmp_path: Path
) -> None:
    url = proxy.url(server_url("redis"))
    seen: set[str] = set()
    for name in ("del", "transaction"):
        operation = OPERATIONS[name]
        trials = cut_at_every_step(
            proxy,
            "reply",
            operation,
            _opener(url, tmp_path, retries=0),
            _opener(server_url("redis"), tmp_path),
        )
        check_whole(trials, operation, url)
        seen |= {type(t.error).__name__ for t in trials}
    # KeyError (a delete's repeat) and LockedError (a foreign write) would be wrong answers.
    assert seen <= {"NoneType", "ConnectionError"}


def test_a_connection_killed_inside_a_transaction_is_reported_as_lost(tmp_path: Path) -> None:
    import redis

    raw = redis.Redis.from_url(server_url("redis"))
    url = server_url("redis")
    d: PersistDict = _opener(url, tmp_path, client_name="pdtest_killed")()
    d.update({"a": 1})
    with pytest.raises(ConnectionError) as info, d.transaction():
        d["a"] = d["a"] + 1
        d["b"] = 2
        # Kill every connection of this dict: the one holding WATCH goes with them.
        assert raw.client_kill_filter(_type="normal", skipme=True) >= 1
    message = str(info.value)
    assert "lost the connection to Redis" in message
    assert "nothing was written" in message
    assert "client not using persistdict" not in message
    assert url in message
    assert dict(d) == {"a": 1}
    with d.transaction():  # the lock was freed: no wait for lock_ttl
        d["a"] = 5
    assert dict(d) == {"a": 5}
    d.close()
    raw.close()
