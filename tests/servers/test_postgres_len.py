"""PostgreSQL: len() reads a row count kept exact by triggers instead of scanning the table."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import persistdict
from persistdict import PersistDict
from tests.helpers import namespace, server_url


def _open(folder: Path, **options: Any) -> PersistDict:
    return persistdict.open(server_url("postgres"), table=namespace("postgres", folder), **options)


def _sql(query: str, *params: Any) -> list[Any]:
    import psycopg

    with psycopg.connect(server_url("postgres"), autocommit=True) as cx:
        cur = cx.execute(query, params)
        return cur.fetchall() if cur.description else []


def _rows(table: str) -> int:
    return int(_sql(f"SELECT count(*) FROM {table}")[0][0])


def test_len_reads_no_row_of_the_table(tmp_path: Path) -> None:
    table = namespace("postgres", tmp_path)
    with _open(tmp_path) as d:
        d.update({f"k{i}": i for i in range(3000)})
        cx = d.backend._conn  # type: ignore[attr-defined]
        query = (
            "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) "
            "FROM pg_stat_xact_user_tables WHERE relname = %s"
        )
        with d.transaction():  # these statistics are this session's, not yet reported
            before = cx.execute(query, (table,)).fetchone()
            assert len(d) == 3000
            assert len(d) == 3000
            after = cx.execute(query, (table,)).fetchone()
            assert sum(1 for _ in d) == 3000
            iterated = cx.execute(query, (table,)).fetchone()
        assert after == before
        assert iterated[0] > after[0]  # the statistics do see a read of the table


def test_len_stays_exact_through_every_kind_of_write(tmp_path: Path) -> None:
    table = namespace("postgres", tmp_path)
    with _open(tmp_path) as d:
        d.update({f"k{i}": i for i in range(1500)})  # COPY path
        d.update({"k1": "again", "new": 1})  # one new key, one update
        d["k2"] = "again"
        d["x"] = 1
        del d["k3"]
        d.pop("k4")
        d.popitem()
        d.setdefault("y", 2)
        d.setdefault("y", 3)
        assert len(d) == _rows(table) == 1500 + 1 + 1 - 3 + 1
        with d.transaction():
            d["in_block"] = 1
            d["in_block_too"] = 1
            del d["k5"]
            assert len(d) == 1501
        try:
            with d.transaction():
                d["rolled_back"] = 1
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            pass
        assert len(d) == _rows(table) == 1501
        # Plain SQL writers are counted too, TRUNCATE included.
        _sql(f"INSERT INTO {table} (key, raw) VALUES ('sql1', '1'), ('sql2', '2')")
        _sql(f"DELETE FROM {table} WHERE key LIKE 'k1%%'")
        _sql(f"UPDATE {table} SET key = 'renamed' WHERE key = 'x'")
        assert len(d) == _rows(table)
        # More than 256 appends: the rows of the count are folded, the sum stays.
        for i in range(300):
            d[f"one{i}"] = i
        assert len(d) == _rows(table)
        assert int(_sql(f"SELECT count(*) FROM {table}__count")[0][0]) < 100
        _sql(f"TRUNCATE {table}")
        assert len(d) == 0
        d.clear()
        assert len(d) == 0


def test_len_is_exact_with_writers_racing(tmp_path: Path) -> None:
    table = namespace("postgres", tmp_path)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with _open(tmp_path) as d:
                for i in range(150):
                    d[f"w{(n * 7 + i) % 97}"] = i  # overlapping keys: inserts and updates
                    if i % 3 == 0:
                        d.pop(f"w{(n + i) % 97}", None)
                    if i % 50 == 0:
                        d.update({f"u{n}_{j}": j for j in range(20)})
                        with d.transaction():
                            d[f"t{n}_{i}"] = i
        except BaseException as exc:
            errors.append(exc)

    with _open(tmp_path):
        pass
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    with _open(tmp_path) as d:
        assert len(d) == _rows(table) == sum(1 for _ in d)


def test_a_table_made_before_the_count_gets_one_at_the_first_writable_open(
    tmp_path: Path,
) -> None:
    table = namespace("postgres", tmp_path)
    # The layout of a table created by an earlier persistdict: no triggers, no side table.
    _sql(
        f'CREATE TABLE {table} (key text COLLATE "C" PRIMARY KEY, '
        "value jsonb GENERATED ALWAYS AS (raw::jsonb) STORED, raw text NOT NULL)"
    )
    _sql(f"INSERT INTO {table} (key, raw) SELECT 'k' || i, i::text FROM generate_series(1, 500) i")
    with _open(tmp_path, flag="r") as reader:
        assert len(reader) == 500  # counted rows: a reader installs nothing
        assert _sql("SELECT to_regclass(%s)", f"{table}__count") == [(None,)]
        with _open(tmp_path) as writer:
            assert len(writer) == 500
            writer["more"] = 1
            assert len(writer) == len(reader) == 501
    with _open(tmp_path, flag="r") as reader:
        assert len(reader) == 501
    # Someone drops the side table: len() counts rows again, and the next open reinstalls it.
    with _open(tmp_path) as d:
        _sql(f"DROP TABLE {table}__count")
        assert len(d) == 501
    with _open(tmp_path) as d:
        d["again"] = 1
        assert len(d) == 502
        assert int(_sql(f"SELECT sum(n) FROM {table}__count")[0][0]) == 502
