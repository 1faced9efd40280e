"""PostgreSQL: connections dropped or killed at every step of a write.

A write outside transaction() runs exactly once across a dropped connection: before COMMIT
the server rolls back and the write runs again; during COMMIT the transaction id says whether
it committed. A transaction() cut anywhere is written whole, or raises ConnectionError saying
that nothing was written.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import persistdict
from tests.helpers import POSTGRES_URL, namespace, server_url
from tests.servers.faults import OPERATIONS, check_whole, cut_at_every_step
from tests.servers.proxy import Lose, Proxy

_IN_TRANSACTION = ("pop", "popitem", "setdefault", "transaction")


def _kill_session_on(port: int) -> None:
    """End the server session of the connection coming from 127.0.0.1:``port``, and wait
    until it has ended."""
    import psycopg

    with psycopg.connect(server_url("postgres"), autocommit=True) as cx:
        cx.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE client_port = %s AND client_addr = '127.0.0.1'",
            (port,),
        )


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    # Not server_url(): that skips (or fails) the test, in its body, not in this fixture.
    with Proxy.in_front_of(POSTGRES_URL) as proxy:
        proxy.killer = _kill_session_on
        yield proxy


def _opener(url: str, folder: Path) -> Any:
    table = namespace("postgres", folder)
    return lambda: persistdict.open(url, table=table, timeout=5)


@pytest.mark.parametrize("lose", ["reply", "request", "kill"])
@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_a_dropped_connection_at_any_step_leaves_the_table_whole(
    proxy: Proxy, tmp_path: Path, name: str, lose: Lose
) -> None:
    direct = server_url("postgres")
    # A password the server doesn't need (trust): the errors must show it masked.
    url = proxy.url(direct).replace("postgres@", "postgres:hunter2@")
    operation = OPERATIONS[name]
    trials = cut_at_every_step(
        proxy, lose, operation, _opener(url, tmp_path), _opener(direct, tmp_path)
    )
    check_whole(trials, operation, url.replace("hunter2", "***"))
    failed = [t for t in trials if t.error is not None]
    assert not [t for t in failed if "hunter2" in str(t.error)]
    if name in _IN_TRANSACTION:
        # A block can't be run again by the library: it either committed or says it didn't.
        assert [str(t.error) for t in failed if "nothing was written" not in str(t.error)] == []
    else:
        assert failed == []
