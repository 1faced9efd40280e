"""Helpers the tests import: the Redis and PostgreSQL test servers, namespaces on them, child
processes, and checks shared by the server and LMDB backends' tests (fixtures are in conftest.py).

The servers are found at ``PERSISTDICT_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) and
``PERSISTDICT_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``). When one
can't be reached its tests skip with the reason, unless ``PERSISTDICT_REQUIRE_SERVERS=1`` (set
by CI), which makes them fail instead.

Every test works in its own namespace: a Redis key prefix or a PostgreSQL table named after
the test's folder and this process id. conftest.py removes whatever a test created after it
(``remove_used_namespaces``) and leftovers of test runs that died at the start of the session
(``remove_stale_namespaces``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REDIS_URL = os.environ.get("PERSISTDICT_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "PERSISTDICT_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
#: PERSISTDICT_STRESS multiplies the size of multi-client and kill runs, for long runs by hand.
STRESS = int(os.environ.get("PERSISTDICT_STRESS", "1"))
_REQUIRED = os.environ.get("PERSISTDICT_REQUIRE_SERVERS", "") not in ("", "0")
_TAG = "pdtest"
# One id per test session, inherited by the processes the tests start, so that they name the
# same stores for the same folder; it is the pid of the session's pytest process.
_SESSION = os.environ.setdefault("PERSISTDICT_TEST_SESSION", str(os.getpid()))
_used: dict[str, set[str]] = {"redis": set(), "postgres": set()}


@functools.cache
def _probe(kind: str) -> str | None:
    """Why the server of ``kind`` can't be used, or ``None`` when it answers."""
    try:
        if kind == "redis":
            import redis

            client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
            client.ping()
            client.close()
        else:
            import psycopg

            psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except Exception as exc:
        return f"no {kind} server at {REDIS_URL if kind == 'redis' else POSTGRES_URL}: {exc}"
    return None


def server_url(kind: str) -> str:
    """The URL of the ``redis`` or ``postgres`` test server; skips (or fails) without it."""
    reason = _probe(kind)
    if reason is not None:
        if _REQUIRED:
            pytest.fail(f"{reason} (PERSISTDICT_REQUIRE_SERVERS=1 makes this a failure)")
        pytest.skip(reason)
    return REDIS_URL if kind == "redis" else POSTGRES_URL


def namespace(kind: str, folder: Path) -> str:
    """A name private to this test folder: the same folder gives the same name, in every
    process of the test session.

    For redis it is a key prefix (``pdtest:<session>:<digest>:``), for postgres a table name;
    it is removed after the test that used it.
    """
    digest = hashlib.blake2b(str(folder).encode(), digest_size=6).hexdigest()
    name = f"{_TAG}:{_SESSION}:{digest}:" if kind == "redis" else f"{_TAG}_{_SESSION}_{digest}"
    _used[kind].add(name)
    return name


def _drop_redis(prefixes: set[str]) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        for prefix in prefixes:
            for key in client.scan_iter(match=prefix.replace("*", r"\*") + "*", count=1000):
                client.unlink(key)
    finally:
        client.close()


def _drop_postgres(tables: set[str]) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(POSTGRES_URL, autocommit=True) as cx:
        for table in tables:
            # With the table go the row count and the trigger function that keeps it.
            cx.execute(
                sql.SQL("DROP TABLE IF EXISTS {}, {}").format(
                    sql.Identifier(table), sql.Identifier(f"{table}__count")
                )
            )
            cx.execute(
                sql.SQL("DROP FUNCTION IF EXISTS {}()").format(sql.Identifier(f"{table}__count_fn"))
            )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale_names(kind: str) -> set[str]:
    """Namespaces of earlier test runs whose process is gone."""
    found: set[str] = set()
    if kind == "redis":
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        try:
            for key in client.scan_iter(match=f"{_TAG}:*", count=1000):
                m = re.match(rf"{_TAG}:(\d+):", key.decode("utf-8", "replace"))
                if m and not _pid_alive(int(m.group(1))):
                    found.add(m.group(0))
        finally:
            client.close()
    else:
        import psycopg

        with psycopg.connect(POSTGRES_URL) as cx:
            rows = cx.execute(
                "SELECT tablename FROM pg_tables WHERE tablename LIKE %s", (f"{_TAG}\\_%",)
            ).fetchall()
            # A row count's trigger function may outlive its table (dropped by hand).
            rows += cx.execute(
                "SELECT left(proname, -length('__count_fn')) FROM pg_proc WHERE proname LIKE %s",
                (f"{_TAG}\\_%\\_\\_count\\_fn",),
            ).fetchall()
        for (table,) in rows:
            m = re.match(rf"{_TAG}_(\d+)_", table)
            if m and not _pid_alive(int(m.group(1))):
                found.add(table)
    return found


def _drop(kind: str, names: set[str]) -> None:
    if names:
        (_drop_redis if kind == "redis" else _drop_postgres)(names)


def remove_stale_namespaces() -> None:
    """Drop the namespaces of test runs whose process is gone, on each server that answers."""
    for kind in _used:
        if _probe(kind) is None:
            _drop(kind, _stale_names(kind))


def remove_used_namespaces() -> None:
    """Drop every namespace named since the last call."""
    for kind, names in _used.items():
        if names:
            taken = set(names)
            names.clear()
            # A test that skipped for want of the server named its store first: nothing to drop.
            if _probe(kind) is None:
                _drop(kind, taken)


def subprocess_env() -> dict[str, Any]:
    """Environment for a child Python (``sys.executable``): this process's own, unchanged.

    The child then imports the persistdict installed in this interpreter, the same one the
    tests import (tests/test_installed.py checks it); adding the checkout's ``src/`` here
    would test other code than the wheel CI installs.
    """
    return dict(os.environ)


def run_pytest_on(suite: Path, source: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Write ``source`` to the test file ``suite`` and run pytest on it in a child process (in
    its folder, quiet, no cache), with ``args``; its output is returned, whatever the result."""
    suite.write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, suite.name],
        cwd=suite.parent,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


_INCREMENT = """
import json, sys, persistdict
with persistdict.open(sys.argv[1], **json.loads(sys.argv[2])) as d:
    for _ in range(int(sys.argv[3])):
        with d.transaction():
            d["n"] = d.get("n", 0) + 1
"""

_WRITE_UNTIL_KILLED = """
import json, sys, persistdict
d = persistdict.open(sys.argv[1], **json.loads(sys.argv[2]))
i = 0
while True:
    d[f"k{i}"] = i
    print(i, flush=True)  # only after the assignment returned
    i += 1
"""


def increment_concurrently(target: str, options: dict[str, Any], rounds: int) -> None:
    """Two other processes and this one each add 1 to ``d["n"]`` ``rounds`` times, every
    time in ``transaction()``; returns when all are done."""
    args = [sys.executable, "-c", _INCREMENT, target, json.dumps(options), str(rounds)]
    procs = [subprocess.Popen(args, env=subprocess_env()) for _ in range(2)]
    import persistdict

    with persistdict.open(target, **options) as d:
        for _ in range(rounds):
            with d.transaction():
                d["n"] = d.get("n", 0) + 1
    assert [p.wait(timeout=300) for p in procs] == [0, 0]


def acknowledged_before_kill(target: str, options: dict[str, Any], writes: int) -> list[int]:
    """Run a process writing ``d[f"k{i}"] = i`` in a loop, SIGKILL it after ``writes``
    acknowledged writes, and return every ``i`` whose assignment had returned."""
    args = [sys.executable, "-c", _WRITE_UNTIL_KILLED, target, json.dumps(options)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=subprocess_env())
    assert proc.stdout is not None
    done = [int(proc.stdout.readline()) for _ in range(writes)]
    proc.send_signal(signal.SIGKILL)
    done += [int(line) for line in proc.stdout.read().split()]
    proc.wait()
    return done


def check_waiting_transaction_times_out(open_dict: Callable[..., Any]) -> None:
    """While one client is inside ``transaction()``, another's waits ``timeout`` seconds and
    raises LockedError; once the first block ends it gets in. ``open_dict(**options)`` opens
    the same dict each time."""
    from persistdict import LockedError

    with open_dict() as d, open_dict(timeout=0.2) as other:
        with d.transaction():
            d["a"] = 1
            started = time.monotonic()
            with pytest.raises(LockedError, match="timeout="), other.transaction():
                pass
            assert time.monotonic() - started >= 0.2
        with other.transaction():
            other["b"] = 2
        assert d == {"a": 1, "b": 2}


def check_fork_child_uses_the_dict(open_dict: Callable[..., Any]) -> None:
    """A dict opened before ``os.fork()`` works in the child (its own connection or
    environment) and afterwards still in the parent."""
    with open_dict() as d:
        d["parent"] = 1
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 1
            try:
                d["child"] = d["parent"] + 1
                d.close()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert status == 0
        d["after"] = 3
        assert d == {"parent": 1, "child": 2, "after": 3}


def check_plain_write_waits_for_a_transaction(open_dict: Callable[..., Any]) -> None:
    """A plain write by another client during a read-modify-write block waits for the block
    and lands after it: neither update is lost."""
    with open_dict() as d, open_dict() as other:
        d["n"] = 0
        writer = threading.Thread(target=other.__setitem__, args=("n", 100))
        with d.transaction():
            n = d["n"]
            writer.start()
            time.sleep(0.3)
            assert writer.is_alive()  # waiting for the block to end
            d["n"] = n + 1
        writer.join(timeout=10)
        assert d["n"] == 100


_DIE_IN_TRANSACTION = """
import json, sys, time, persistdict
d = persistdict.open(sys.argv[1], **json.loads(sys.argv[2]))
with d.transaction():
    d["uncommitted"] = True
    print("inside", flush=True)
    time.sleep(60)
"""


def kill_inside_transaction(target: str, options: dict[str, Any]) -> None:
    """Start a process that writes inside ``transaction()`` and SIGKILL it there, holding
    whatever lock its transaction took."""
    args = [sys.executable, "-c", _DIE_IN_TRANSACTION, target, json.dumps(options)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=subprocess_env())
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "inside"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()


def check_a_client_killed_in_a_transaction_blocks_no_one(
    target: str, options: dict[str, Any], *, within: float
) -> None:
    """After a client dies inside ``transaction()``, its writes are gone and another
    client's transaction gets in within ``within`` seconds."""
    import persistdict

    kill_inside_transaction(target, options)
    started = time.monotonic()
    with persistdict.open(target, **options, timeout=within + 5) as d:
        with d.transaction():
            d["after"] = 1
        assert time.monotonic() - started < within
        assert "uncommitted" not in d
        assert d["after"] == 1
