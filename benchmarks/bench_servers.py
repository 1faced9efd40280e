"""Bulk ``update()`` on the Redis, PostgreSQL and LMDB backends against the raw client.

    python benchmarks/bench_servers.py                  # 100,000 keys, 3 repetitions
    python benchmarks/bench_servers.py --keys 1000000 --repeat 5

For each backend, ``d.update(items)`` of N new keys into an emptied store is timed against the
raw driver doing the same work the way a careful user would: JSON-encode every value, then one
batch (redis-py pipeline of HSETs; psycopg COPY into a staging table plus one upsert, and
``executemany`` of the upsert; py-lmdb ``putmulti`` in one write transaction, fsynced).
Prints seconds (median of the repetitions, interleaved with the raw client's), keys per
second and the ratio persistdict/raw.
Servers: ``PERSISTDICT_BENCH_REDIS`` (default ``redis://127.0.0.1:6379/15``) and
``PERSISTDICT_BENCH_POSTGRES`` (default ``postgresql://postgres@127.0.0.1/test``); tables and
hashes are named ``bench_servers_*_<pid>`` and removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import persistdict

REDIS = os.environ.get("PERSISTDICT_BENCH_REDIS", "redis://127.0.0.1:6379/15")
POSTGRES = os.environ.get("PERSISTDICT_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1/test")
# Named after this process, so that two runs at once (the smoke test and a by-hand run) never
# share a table or hash.
OURS = f"bench_servers_pd_{os.getpid()}"
RAW = f"bench_servers_raw_{os.getpid()}"


def _items(n: int) -> dict[str, Any]:
    return {f"key_{i:08d}": {"index": i, "name": f"n{i}", "tags": ["a", i % 7]} for i in range(n)}


# persistdict.


def _persistdict(target: str, **options: Any) -> Callable[[dict[str, Any]], float]:
    def measure(items: dict[str, Any]) -> float:
        d = persistdict.open(target, flag="n", **options)
        try:
            started = time.perf_counter()
            d.update(items)
            elapsed = time.perf_counter() - started
            assert len(d) == len(items)
        finally:
            d.close()
        return elapsed

    return measure


# Raw clients, doing the same work.


def _raw_redis(items: dict[str, Any]) -> float:
    import redis

    client = redis.Redis.from_url(REDIS)
    client.delete(RAW)
    started = time.perf_counter()
    encoded = {k: json.dumps(v, separators=(",", ":")) for k, v in items.items()}
    pipe = client.pipeline(transaction=True)
    keys = list(encoded)
    for i in range(0, len(keys), 1000):
        pipe.hset(RAW, mapping={k: encoded[k] for k in keys[i : i + 1000]})
    pipe.execute()
    elapsed = time.perf_counter() - started
    assert client.hlen(RAW) == len(items)
    client.delete(RAW)
    client.close()
    return elapsed


def _pg_table(cx: Any) -> None:
    cx.execute(f"DROP TABLE IF EXISTS {RAW}")
    cx.execute(f'CREATE TABLE {RAW} (key text COLLATE "C" PRIMARY KEY, value jsonb)')


def _raw_postgres_copy(items: dict[str, Any]) -> float:
    import psycopg

    with psycopg.connect(POSTGRES, autocommit=True) as cx:
        _pg_table(cx)
        started = time.perf_counter()
        with cx.transaction():
            cx.execute("CREATE TEMP TABLE stage (key text, value jsonb) ON COMMIT DROP")
            with cx.cursor().copy("COPY stage (key, value) FROM STDIN") as copy:
                for k, v in items.items():
                    copy.write_row((k, json.dumps(v, separators=(",", ":"))))
            cx.execute(
                f"INSERT INTO {RAW} SELECT * FROM stage "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            )
        elapsed = time.perf_counter() - started
        cx.execute(f"DROP TABLE {RAW}")
    return elapsed


def _raw_postgres_executemany(items: dict[str, Any]) -> float:
    import psycopg

    with psycopg.connect(POSTGRES, autocommit=True) as cx:
        _pg_table(cx)
        started = time.perf_counter()
        rows = [(k, json.dumps(v, separators=(",", ":"))) for k, v in items.items()]
        with cx.transaction():
            cx.cursor().executemany(
                f"INSERT INTO {RAW} VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                rows,
            )
        elapsed = time.perf_counter() - started
        cx.execute(f"DROP TABLE {RAW}")
    return elapsed


def _raw_lmdb(folder: str) -> Callable[[dict[str, Any]], float]:
    def measure(items: dict[str, Any]) -> float:
        import lmdb

        path = os.path.join(folder, "raw.lmdb")
        shutil.rmtree(path, ignore_errors=True)
        env = lmdb.open(path, map_size=1 << 30, max_dbs=4)
        db = env.open_db(b"items")
        started = time.perf_counter()
        rows = [
            (k.encode(), json.dumps(v, separators=(",", ":")).encode()) for k, v in items.items()
        ]
        with env.begin(write=True, db=db) as txn:
            txn.cursor().putmulti(rows)
        elapsed = time.perf_counter() - started
        env.close()
        return elapsed

    return measure


def _drop_persistdict_stores() -> None:
    try:
        import redis

        client = redis.Redis.from_url(REDIS)
        client.delete(OURS)
        client.close()
    except Exception:  # no server: nothing was created
        pass
    try:
        import psycopg

        with psycopg.connect(POSTGRES, autocommit=True) as cx:
            # The backend's row-count side table and trigger function go with the table.
            cx.execute(f"DROP TABLE IF EXISTS {OURS}, {OURS}__count")
            cx.execute(f"DROP FUNCTION IF EXISTS {OURS}__count_fn")
    except Exception:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    items = _items(args.keys)
    folder = tempfile.mkdtemp(prefix="bench-servers-")
    lmdb_target = os.path.join(folder, "pd.lmdb")
    rows: list[tuple[str, Callable[[dict[str, Any]], float], list[tuple[str, Any]]]] = [
        ("redis", _persistdict(REDIS, table=OURS), [("pipeline", _raw_redis)]),
        (
            "postgres",
            _persistdict(POSTGRES, table=OURS),
            [("COPY", _raw_postgres_copy), ("executemany", _raw_postgres_executemany)],
        ),
        ("lmdb", _persistdict(lmdb_target), [("putmulti", _raw_lmdb(folder))]),
    ]
    command = "python benchmarks/bench_servers.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    print("## Bulk update() against the raw clients\n")
    print(f"Command: `{command.strip()}`\n")
    print(
        f"`d.update()` of {args.keys:,} new keys, seconds (median of {args.repeat} repetitions, "
        f"persistdict's and the raw client's interleaved); Python {platform.python_version()}, "
        f"{os.cpu_count()} cores.\n"
    )
    print("| backend | persistdict s | keys/s | raw client | raw s | ratio pd/raw |")
    print("| --- | --- | --- | --- | --- | --- |")
    try:
        for name, ours, raws in rows:
            times: dict[str, list[float]] = {label: [] for label in ("", *(r[0] for r in raws))}
            sides = [("", ours), *raws]
            try:
                for rep in range(args.repeat):
                    for label, measure in sides if rep % 2 == 0 else sides[::-1]:
                        times[label].append(measure(items))
            except Exception as exc:  # no server, no driver: say so in the row
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                print(f"| {name} | skipped: {reason.replace('|', '/')} | | | | |")
                continue
            pd = statistics.median(times[""])
            for label, _ in raws:
                raw_s = statistics.median(times[label])
                print(
                    f"| {name} | {pd:.3f} | {args.keys / pd:,.0f} | {label} | {raw_s:.3f} "
                    f"| {pd / raw_s:.2f} |"
                )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        _drop_persistdict_stores()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
