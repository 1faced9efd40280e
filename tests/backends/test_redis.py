"""Redis backend: the shared suite against the real server, plus what only Redis has."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict import LockedError, PersistDict
from persistdict.testing import MappingConformance
from tests.helpers import (
    STRESS,
    acknowledged_before_kill,
    check_a_client_killed_in_a_transaction_blocks_no_one,
    check_fork_child_uses_the_dict,
    check_plain_write_waits_for_a_transaction,
    check_waiting_transaction_times_out,
    increment_concurrently,
    namespace,
    server_url,
)


class TestRedis(MappingConformance):
    backend_name = "redis"
    file_based = False

    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        url = server_url("redis")
        return persistdict.open(url, prefix=namespace("redis", folder), **options)


class TestRedisBatched(MappingConformance):
    backend_name = "redis"
    file_based = False

    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        prefix = namespace("redis", folder)
        return persistdict.open(server_url("redis"), prefix=prefix, commit_every=7, **options)


def _open(folder: Path, **options: Any) -> PersistDict:
    return TestRedis().open_dict(folder, **options)


def _client() -> Any:
    import redis

    return redis.Redis.from_url(server_url("redis"))


def test_hash_layout_and_url_query_options(tmp_path: Path) -> None:
    prefix = namespace("redis", tmp_path)
    url = server_url("redis") + f"?prefix={prefix}&lock_ttl=5"
    with persistdict.open(url, table="users") as d:
        d["alice"] = {"id": 1}
        assert d.backend.lock_ttl == 5.0  # type: ignore[attr-defined]
    raw = _client()
    assert raw.hgetall(f"{prefix}users") == {b"alice": b'{"id":1}'}
    raw.close()
    with pytest.raises(ValueError, match="given twice"):
        persistdict.open(url, table="users", prefix="other:")
    with pytest.raises(ValueError, match=r"unknown option 'colour'.*accepted: client_name"):
        persistdict.open(server_url("redis") + "?colour=blue")


def test_a_key_of_another_type_is_refused_untouched(tmp_path: Path) -> None:
    prefix = namespace("redis", tmp_path)
    raw = _client()
    raw.set(f"{prefix}items", b"a string")
    with pytest.raises(persistdict.CorruptError, match="holds a Redis string, not a hash"):
        _open(tmp_path, flag="n")
    assert raw.get(f"{prefix}items") == b"a string"
    raw.close()


def test_iteration_scans_instead_of_loading_the_hash(tmp_path: Path) -> None:
    raw = _client()

    def calls(command: str) -> int:
        stats = raw.info("commandstats").get(f"cmdstat_{command}", {})
        return int(stats.get("calls", 0))

    with _open(tmp_path) as d:
        d.update({f"k{i}": i for i in range(3000)})
        before_scan, before_all = calls("hscan"), calls("hgetall")
        assert sum(1 for _ in d.items()) == 3000
        assert calls("hscan") - before_scan >= 3  # several cursor steps, not one big reply
        assert calls("hgetall") == before_all
    raw.close()


def test_update_is_whole_or_refused_with_any_serializer(tmp_path: Path) -> None:
    with _open(tmp_path) as d:
        d["kept"] = 0
        with pytest.raises(ValueError, match="'bad \\\\udfff'"):
            d.update({"a": 1, "bad \udfff": 2, "b": 3})
        with pytest.raises(ValueError, match="value for key 'b'"):
            d.update({"a": 1, "b": "bad \ud800"})
        assert d == {"kept": 0}
        d.update({"a": 1, "b": [2]})
        assert d == {"kept": 0, "a": 1, "b": [2]}
    with _open(tmp_path, serializer=persistdict.PickleSerializer()) as d:  # bytes values
        d.clear()
        d.update({"a": {1, 2}, "b": b"\xff"})
        assert d == {"a": {1, 2}, "b": b"\xff"}
        with pytest.raises(ValueError, match="'bad \\\\udfff'"):
            d.update({"c": 1, "bad \udfff": 2})
        assert sorted(d) == ["a", "b"]


def test_commit_every_batches_until_full_or_flushed(tmp_path: Path) -> None:
    with _open(tmp_path, commit_every=3) as d, _open(tmp_path) as other:
        d["a"], d["b"] = 1, 2
        assert d["a"] == 1
        assert sorted(d) == ["a", "b"]
        assert len(d) == 2
        assert "a" not in other
        d["c"] = 3
        assert other == {"a": 1, "b": 2, "c": 3}
        del d["a"]
        assert "a" in other
        assert "a" not in d
        d.flush()
        assert other == {"b": 2, "c": 3}


def test_two_clients_incrementing_in_transactions_end_exact(tmp_path: Path) -> None:
    options = {"prefix": namespace("redis", tmp_path), "timeout": 60}
    increment_concurrently(server_url("redis"), options, 150 * STRESS)
    with _open(tmp_path) as d:
        assert d["n"] == 3 * 150 * STRESS


def test_a_plain_write_waits_for_a_transaction_instead_of_being_lost(tmp_path: Path) -> None:
    check_plain_write_waits_for_a_transaction(lambda **options: _open(tmp_path, **options))


def test_a_foreign_write_during_a_transaction_makes_it_fail_whole(tmp_path: Path) -> None:
    raw = _client()
    with _open(tmp_path) as d:
        d["n"] = 1
        with (
            pytest.raises(LockedError, match=r"nothing was written\. Run the block again"),
            d.transaction(),
        ):
            d["n"] = d["n"] + 1
            d["mine"] = True
            raw.hset(d.backend.hash_name, "theirs", b"true")  # type: ignore[attr-defined]
        assert d == {"n": 1, "theirs": True}
    raw.close()


def test_a_waiting_transaction_times_out_with_locked_error(tmp_path: Path) -> None:
    check_waiting_transaction_times_out(lambda **options: _open(tmp_path, **options))


def test_a_killed_client_loses_no_acknowledged_write(tmp_path: Path) -> None:
    options = {"prefix": namespace("redis", tmp_path)}
    done = acknowledged_before_kill(server_url("redis"), options, 200 * STRESS)
    with _open(tmp_path) as d:
        assert [i for i in done if d.get(f"k{i}") != i] == []


def test_fork_child_reconnects_and_parent_keeps_working(tmp_path: Path) -> None:
    check_fork_child_uses_the_dict(lambda **options: _open(tmp_path, **options))


# A throwaway server, stopped and started by the test.


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Server:
    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port = folder, port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--requirepass", "s3cret"]
        args += ["--unixsocket", str(self.folder / "r.sock"), "--dir", str(self.folder)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise AssertionError("the throwaway redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def throwaway(tmp_path: Path) -> Iterator[_Server]:
    if shutil.which("redis-server") is None:
        if os.environ.get("PERSISTDICT_REQUIRE_SERVERS", "") not in ("", "0"):
            pytest.fail("redis-server is not installed (PERSISTDICT_REQUIRE_SERVERS=1)")
        pytest.skip("redis-server is not installed")
    server = _Server(tmp_path, _free_port())
    server.start()
    yield server
    server.stop()


def test_server_stopped_mid_run_gives_a_clear_error_then_recovers(throwaway: _Server) -> None:
    url = f"redis://:s3cret@127.0.0.1:{throwaway.port}/0"
    with persistdict.open(url, commit_every=10, socket_timeout=2) as d:
        assert "s3cret" not in repr(d)
        assert ":***@" in repr(d)
        d["sent"] = 1
        d.flush()
        d["pending"] = 2
        throwaway.stop()
        with pytest.raises(ConnectionError) as info:
            d.flush()
        message = str(info.value)
        assert f"redis://:***@127.0.0.1:{throwaway.port}/0" in message
        assert "s3cret" not in message
        with pytest.raises(ConnectionError, match="server is running"):
            d["sent"]
        throwaway.start()  # --save '': the server comes back empty
        d.flush()  # the pending write was kept and is sent now
        assert d == {"pending": 2}
        d["again"] = 3
        assert d["again"] == 3


def test_plain_writes_work_on_a_restarted_server_that_lost_their_scripts(
    throwaway: _Server,
) -> None:
    url = f"redis://:s3cret@127.0.0.1:{throwaway.port}/0"
    with persistdict.open(url) as d:
        d["a"] = 1
        del d["a"]
        throwaway.stop()
        throwaway.start()  # empty, and without the scripts the writes ran before
        d["b"] = 2
        d["c"] = 3
        del d["b"]
        d.update({"d": 4})
        assert d == {"c": 3, "d": 4}


def test_unix_socket_url(throwaway: _Server) -> None:
    url = f"unix://:s3cret@{throwaway.folder / 'r.sock'}?db=2"
    with persistdict.open(url, table="sock") as d:
        d["a"] = [1]
        assert "unix://:***@" in repr(d)
    with persistdict.open(f"redis://:s3cret@127.0.0.1:{throwaway.port}/2", table="sock") as d:
        assert d == {"a": [1]}


def test_a_client_killed_in_a_transaction_frees_the_lock_after_lock_ttl(tmp_path: Path) -> None:
    options = {"prefix": namespace("redis", tmp_path), "lock_ttl": 1.0}
    check_a_client_killed_in_a_transaction_blocks_no_one(server_url("redis"), options, within=4)
