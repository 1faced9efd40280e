"""PostgreSQL backend: the shared suite against the real server, plus what only it has."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict import CorruptError, PersistDict
from persistdict.backends.postgres_table import _column_key
from persistdict.serializers import JsonSerializer
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


class TestPostgres(MappingConformance):
    backend_name = "postgres"
    file_based = False

    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        table = namespace("postgres", folder)
        return persistdict.open(server_url("postgres"), table=table, **options)


class TestPostgresPickle(MappingConformance):
    backend_name = "postgres"
    file_based = False

    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        table = namespace("postgres", folder)
        return persistdict.open(server_url("postgres"), table=table, serializer="pickle", **options)

    def unstorable(self) -> Any:
        return threading.Lock()


def _open(folder: Path, **options: Any) -> PersistDict:
    return TestPostgres().open_dict(folder, **options)


def _sql(query: str, *params: Any) -> list[Any]:
    import psycopg

    with psycopg.connect(server_url("postgres"), autocommit=True) as cx:
        cur = cx.execute(query, params)
        return cur.fetchall() if cur.description else []


def test_json_values_are_queryable_jsonb_and_round_trip_exactly(tmp_path: Path) -> None:
    table = namespace("postgres", tmp_path)
    tricky = {"zeta": 1, "a": 1e16, "neg": -0.0, "big": 2**70, "nan": float("nan")}
    with _open(tmp_path, serializer=JsonSerializer(allow_nan=True)) as d:  # NaN opted in
        d["user"] = {"name": "ada", "langs": ["en", "fr"], "id": 7}
        d["tricky"] = tricky
        d["nul"] = "a\x00b"
        back = d["tricky"]
        assert list(back) == list(tricky)  # key order kept (jsonb alone sorts keys)
        assert isinstance(back["a"], float)  # jsonb alone would give 10000000000000000
        assert str(back["neg"]) == "-0.0"
        assert back["nan"] != back["nan"]
        assert d["nul"] == "a\x00b"
    rows = _sql(f"SELECT value->>'name', value->'langs'->>1 FROM {table} WHERE key = 'user'")
    assert rows == [("ada", "fr")]
    # jsonb can't hold NaN or \u0000: those rows have no document, only the exact text.
    assert _sql(f"SELECT key FROM {table} WHERE value IS NULL ORDER BY key") == [
        ("nul",),
        ("tricky",),
    ]
    columns = _sql(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = %s ORDER BY ordinal_position",
        table,
    )
    assert columns == [("key", "text"), ("value", "jsonb"), ("raw", "text")]


def test_other_serializers_get_a_bytea_column(tmp_path: Path) -> None:
    with TestPostgresPickle().open_dict(tmp_path) as d:
        d["s"] = {1, 2}
    table = namespace("postgres", tmp_path)
    columns = _sql(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = %s ORDER BY ordinal_position",
        table,
    )
    assert columns == [("key", "text"), ("value", "bytea")]
    with _open(tmp_path, flag="n") as d:  # the JSON serializer works on a bytea table too
        d["j"] = {"a": [1]}
        assert d["j"] == {"a": [1]}
    _open(tmp_path / "json").close()
    with pytest.raises(ValueError, match=r"holds JSON \(a jsonb table\).*JSON serializer"):
        TestPostgresPickle().open_dict(tmp_path / "json")


def test_a_foreign_table_is_refused_untouched(tmp_path: Path) -> None:
    table = namespace("postgres", tmp_path)
    _sql(f"CREATE TABLE {table} (id int, name text)")
    _sql(f"INSERT INTO {table} VALUES (1, 'x')")
    with pytest.raises(CorruptError, match=r"not created by persistdict \(columns: id integer"):
        _open(tmp_path, flag="n")
    assert _sql(f"SELECT * FROM {table}") == [(1, "x")]


def test_keys_with_nul_are_stored_escaped(tmp_path: Path) -> None:
    table = namespace("postgres", tmp_path)
    keys = ["a\x00b", "\x00", "\uffff", "\uffff0", "\uffff\x00", "plain"]
    with _open(tmp_path) as d:
        for i, key in enumerate(keys):
            d[key] = i
        d.update({"u\x00": "batch"})
        assert sorted(d) == sorted([*keys, "u\x00"])
        assert [d[k] for k in keys] == list(range(len(keys)))
        del d["a\x00b"]
        assert "a\x00b" not in d
    # PostgreSQL text can't hold NUL: it is written as U+FFFF "0", U+FFFF as U+FFFF U+FFFF.
    stored = {k for (k,) in _sql(f"SELECT key FROM {table}")}
    assert stored == {
        "\uffff0",
        "\uffff\uffff",
        "\uffff\uffff0",
        "\uffff\uffff\uffff0",
        "plain",
        "u\uffff0",
    }


def test_iterating_pages_gives_escaped_keys_back_as_written(tmp_path: Path) -> None:
    # Iteration reads pages of 1,000 keys; the escaped ones sort after every ASCII key
    # (U+FFFF in the "C" collation), so here they come in the second page only.
    written = {f"k{i:04d}": i for i in range(1500)}
    written.update({"\x00": "nul", "z\uffff": "ffff", "z\x00\uffff": "both"})
    with _open(tmp_path) as d:
        d.update(written)
        assert list(d) == sorted(written, key=lambda k: _column_key(k).encode())
        assert dict(d.items()) == written
        assert len(list(d.items())) == len(written)


def test_large_update_is_one_transaction(tmp_path: Path) -> None:
    with _open(tmp_path) as d, _open(tmp_path) as other:
        d.update((f"k{i}", i) for i in range(5000))  # COPY path
        d.update([("k1", "first"), ("k1", "last")])  # a repeated key: the last value wins
        assert len(other) == 5000
        assert other["k4999"] == 4999
        assert other["k1"] == "last"


def test_url_options_and_libpq_parameters(tmp_path: Path) -> None:
    table = namespace("postgres", tmp_path)
    url = server_url("postgres") + "?application_name=pdtest_app&timeout=3&schema=public"
    with persistdict.open(url, table=table) as d:
        d["a"] = 1
        assert d.backend.timeout == 3.0  # type: ignore[attr-defined]
        names = _sql("SELECT application_name FROM pg_stat_activity")
        assert ("pdtest_app",) in names
    with pytest.raises(ValueError, match="given twice"):
        persistdict.open(url, table=table, timeout=4)


def test_two_clients_incrementing_in_transactions_end_exact(tmp_path: Path) -> None:
    options = {"table": namespace("postgres", tmp_path), "timeout": 60}
    increment_concurrently(server_url("postgres"), options, 100 * STRESS)
    with _open(tmp_path) as d:
        assert d["n"] == 3 * 100 * STRESS


def test_a_plain_write_waits_for_a_transaction_instead_of_being_lost(tmp_path: Path) -> None:
    check_plain_write_waits_for_a_transaction(lambda **options: _open(tmp_path, **options))


def test_a_waiting_transaction_times_out_with_locked_error(tmp_path: Path) -> None:
    check_waiting_transaction_times_out(lambda **options: _open(tmp_path, **options))


def test_a_killed_client_loses_no_committed_write(tmp_path: Path) -> None:
    options = {"table": namespace("postgres", tmp_path)}
    done = acknowledged_before_kill(server_url("postgres"), options, 100 * STRESS)
    with _open(tmp_path) as d:
        assert [i for i in done if d.get(f"k{i}") != i] == []


def test_a_dropped_connection_reconnects_between_calls(tmp_path: Path) -> None:
    with _open(tmp_path) as d:
        d["a"] = 1
        pid = d.backend._conn.info.backend_pid  # type: ignore[attr-defined]
        _sql("SELECT pg_terminate_backend(%s)", pid)
        assert d["a"] == 1  # reconnected and read again
        d["b"] = 2
        with pytest.raises(ConnectionError, match="rolled back"), d.transaction():
            d["c"] = 3
            pid = d.backend._conn.info.backend_pid  # type: ignore[attr-defined]
            _sql("SELECT pg_terminate_backend(%s)", pid)
            d["d"] = 4
        assert d == {"a": 1, "b": 2}


def test_server_down_names_the_url_with_the_password_masked() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://app:hunter2@127.0.0.1:{port}/test?connect_timeout=2"
    with pytest.raises(ConnectionError) as info:
        persistdict.open(url)
    assert f"postgresql://app:***@127.0.0.1:{port}/test" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_fork_child_gets_its_own_connection(tmp_path: Path) -> None:
    check_fork_child_uses_the_dict(lambda **options: _open(tmp_path, **options))


def test_a_client_killed_in_a_transaction_blocks_no_one(tmp_path: Path) -> None:
    options = {"table": namespace("postgres", tmp_path)}
    check_a_client_killed_in_a_transaction_blocks_no_one(server_url("postgres"), options, within=3)


@pytest.mark.parametrize("flag", ["r", "w"])
def test_a_missing_table_is_an_error_naming_the_tables_there(tmp_path: Path, flag: str) -> None:
    # In a schema of its own, so that the tables listed are only this test's.
    schema = namespace("postgres", tmp_path) + "_s"
    url = server_url("postgres")
    _sql(f"CREATE SCHEMA {schema}")
    try:
        for table in ("events", "users"):
            with persistdict.open(url, table=table, schema=schema) as d:
                d["k"] = table
        with pytest.raises(FileNotFoundError) as caught:
            persistdict.open(url, flag, table="evnts", schema=schema)
        assert "has no table 'evnts'; its tables: events, users." in str(caught.value)
        assert "flag='c'" in str(caught.value)
        assert _sql("SELECT to_regclass(%s)::text", f"{schema}.evnts") == [(None,)]
        with persistdict.open(url, flag, table="events", schema=schema) as d:
            assert dict(d.items()) == {"k": "events"}
    finally:
        _sql(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.parametrize("option", ["table", "schema"])
def test_a_name_longer_than_postgres_identifiers_is_refused_before_any_io(option: str) -> None:
    """PostgreSQL cuts identifiers to 63 bytes without a word: two tables whose names differ
    only after that were one table, and ``flag="n"`` on one emptied the other."""
    long_name = "t" + "a" * 62 + "_x"  # 65 characters
    url = "postgresql://nobody@127.0.0.1:1/none"  # nothing listens: any I/O would fail there
    with pytest.raises(ValueError, match="63 bytes") as caught:
        persistdict.open(url, **{option: long_name})
    assert repr(long_name) in str(caught.value)


@pytest.mark.parametrize(
    ("bad_key", "bad_value", "error", "words"),
    [
        ("k\ud800", '"v"', ValueError, "as UTF-8"),
        ("nul", '"a\x00b"', ValueError, "contains NUL"),
        ("surrogate", '"v\udfff"', ValueError, "as UTF-8"),
        ("number", 5, TypeError, "encoded as int"),
    ],
)
def test_set_many_checks_the_batch_whole_and_names_the_key_it_refuses(
    tmp_path: Path, bad_key: str, bad_value: Any, error: type[Exception], words: str
) -> None:
    # A batch is checked in one pass, and key by key only when that pass finds a fault, to
    # name the key; either way nothing of it is written. (The JSON serializer never hands
    # the table NUL or a non-str; another caller of the backend may.)
    with _open(tmp_path) as d:
        d["kept"] = "old"
        for size in (10, 3000):  # one statement; COPY
            batch = {f"k{i}": '"new"' for i in range(size)} | {"kept": '"new"', bad_key: bad_value}
            with pytest.raises(error, match=words) as caught:
                d.backend.set_many(batch.items())
            assert repr(bad_key) in str(caught.value)
            assert dict(d) == {"kept": "old"}
        d.update({"a\x00b": "nul key", "\uffff": "escape", "plain": "text"})  # escaped keys
        assert dict(d) == {"kept": "old", "a\x00b": "nul key", "\uffff": "escape", "plain": "text"}
