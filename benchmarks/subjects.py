"""The implementations the benchmark compares, each behind one small adapter.

A :class:`Subject` drives a ``MutableMapping``-like object through the workloads; the raw
baselines (``RawSqlite``, ``RawJson``) override every workload with the direct library calls, so
they carry none of an adapter's overhead and stay true floors. Each subject states what a
returned write promises (``durable_each`` and ``durable_batch``) and how it encodes values.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import persistdict

BATCH = 1000  # writes per commit in the "batched" workload
TABLE = "items"
REDIS_URL = os.environ.get("PERSISTDICT_BENCH_REDIS", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get("PERSISTDICT_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1/test")

# The exact codec of persistdict's JsonSerializer, so the raw floors do the same encoding work.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_DECODE = json.JSONDecoder().decode


class Subject:
    """One row of the table. The defaults drive a mapping with ``[]``, ``in``, ``len``...

    Attributes:
        label: the row name.
        baseline: the label of the row this one's ratios are computed against.
        durable_each: what "set, each durable" promises when the call returns.
        durable_batch: what the batched set promises.
        encoding: how values are stored.
        persistent: False for the plain dict (no reopen, no file).
        rewrites_whole_file: a durable write rewrites everything (few samples suffice).
    """

    label = ""
    baseline = "raw sqlite3"
    durable_each = ""
    durable_batch = f"committed every {BATCH} writes"
    encoding = "JSON (stdlib)"
    persistent = True
    rewrites_whole_file = False
    suffix = ".db"

    def available(self) -> str | None:
        """``None`` if this subject can run here, else why not."""
        return None

    def open(self, path: Path, batched: bool) -> Any:
        raise NotImplementedError

    def close(self, m: Any) -> None:
        m.close()

    def commit(self, m: Any) -> None:
        """Make every write so far durable to this subject's promise."""

    def commit_each(self, m: Any) -> None:
        """Called after each write of the "set, each durable" workload."""

    def commit_batch(self, m: Any) -> None:
        """Called after every ``BATCH`` writes of the batched workload."""
        self.commit(m)

    def remove(self, path: Path) -> None:
        """Delete what ``open(path)`` created."""
        for p in path.parent.glob(path.name + "*"):
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()

    def size(self, path: Path) -> int | None:
        """Bytes on disk for the store at ``path`` (after close), ``None`` if not a file."""
        total = 0
        for p in path.parent.glob(path.name + "*"):
            files = p.rglob("*") if p.is_dir() else [p]
            total += sum(f.stat().st_size for f in files if f.is_file())
        return total

    # Workloads. Each does the whole operation; the runner times the call.

    def fill(self, m: Any, items: list[tuple[str, Any]]) -> None:
        commit_batch = self.commit_batch
        for i, (k, v) in enumerate(items, 1):
            m[k] = v
            if i % BATCH == 0:
                commit_batch(m)
        self.commit(m)

    def set_each(self, m: Any, items: list[tuple[str, Any]]) -> None:
        commit_each = self.commit_each
        for k, v in items:
            m[k] = v
            commit_each(m)

    def update(self, m: Any, batch: dict[str, Any]) -> None:
        m.update(batch)
        self.commit(m)

    def get(self, m: Any, keys: list[str]) -> None:
        for k in keys:
            m[k]

    def contains(self, m: Any, keys: list[str]) -> None:
        for k in keys:
            k in m  # noqa: B015 - the lookup is the work being timed

    def iter_keys(self, m: Any) -> None:
        for _ in m:
            pass

    def iter_items(self, m: Any) -> None:
        for _ in m.items():
            pass

    def length(self, m: Any, calls: int) -> None:
        for _ in range(calls):
            len(m)

    def reopen_read_all(self, path: Path) -> Any:
        m = self.open(path, batched=False)
        self.iter_items(m)
        return m

    def delete_batched(self, m: Any, keys: list[str]) -> None:
        """Delete ``keys``, committed like the batched set (used by bench_engines.py)."""
        commit_batch = self.commit_batch
        for i, k in enumerate(keys, 1):
            del m[k]
            if i % BATCH == 0:
                commit_batch(m)
        self.commit(m)

    def reopen_gets(self, path: Path, keys: list[str]) -> Any:
        """Open the closed store and read ``keys`` (used by bench_engines.py)."""
        m = self.open(path, batched=False)
        self.get(m, keys)
        return m


class PlainDict(Subject):
    label = "dict"
    baseline = "dict"
    durable_each = "none (memory only)"
    durable_batch = "none (memory only)"
    encoding = "live objects"
    persistent = False

    def __init__(self) -> None:
        self._dicts: dict[Path, dict[str, Any]] = {}

    def open(self, path: Path, batched: bool) -> Any:
        return self._dicts.setdefault(path, {})

    def close(self, m: Any) -> None:
        pass

    def remove(self, path: Path) -> None:
        self._dicts.pop(path, None)


class RawSqlite(Subject):
    """sqlite3 itself with persistdict's pragmas, table, statements and JSON codec."""

    label = "raw sqlite3"
    durable_each = "committed (WAL, synchronous=NORMAL)"
    durable_batch = f"committed every {BATCH} (WAL, NORMAL)"

    _get = f"SELECT value FROM {TABLE} WHERE key = ?"
    _has = f"SELECT 1 FROM {TABLE} WHERE key = ?"
    _set = (
        f"INSERT INTO {TABLE} (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    )

    def open(self, path: Path, batched: bool) -> Any:
        cx = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        cx.execute("PRAGMA journal_mode=WAL")
        cx.execute("PRAGMA synchronous=NORMAL")
        cx.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} "
            "(key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID"
        )
        return cx

    def fill(self, m: Any, items: list[tuple[str, Any]]) -> None:
        execute, sql = m.execute, self._set
        execute("BEGIN IMMEDIATE")
        for i, (k, v) in enumerate(items, 1):
            execute(sql, (k, _ENCODE(v)))
            if i % BATCH == 0:
                execute("COMMIT")
                execute("BEGIN IMMEDIATE")
        execute("COMMIT")

    def set_each(self, m: Any, items: list[tuple[str, Any]]) -> None:
        execute, sql = m.execute, self._set
        for k, v in items:
            execute(sql, (k, _ENCODE(v)))

    def update(self, m: Any, batch: dict[str, Any]) -> None:
        rows = [(k, _ENCODE(v)) for k, v in batch.items()]
        m.execute("BEGIN IMMEDIATE")
        m.executemany(self._set, rows)
        m.execute("COMMIT")

    def get(self, m: Any, keys: list[str]) -> None:
        execute, sql = m.execute, self._get
        for k in keys:
            _DECODE(execute(sql, (k,)).fetchone()[0])

    def contains(self, m: Any, keys: list[str]) -> None:
        execute, sql = m.execute, self._has
        for k in keys:
            execute(sql, (k,)).fetchone() is not None  # noqa: B015 - timed lookup

    def iter_keys(self, m: Any) -> None:
        for _ in m.execute(f"SELECT key FROM {TABLE} ORDER BY key"):
            pass

    def iter_items(self, m: Any) -> None:
        for _, v in m.execute(f"SELECT key, value FROM {TABLE} ORDER BY key"):
            _DECODE(v)

    def length(self, m: Any, calls: int) -> None:
        for _ in range(calls):
            m.execute(f"SELECT count(*) FROM {TABLE}").fetchone()

    def delete_batched(self, m: Any, keys: list[str]) -> None:
        execute, sql = m.execute, f"DELETE FROM {TABLE} WHERE key = ?"
        execute("BEGIN IMMEDIATE")
        for i, k in enumerate(keys, 1):
            execute(sql, (k,))
            if i % BATCH == 0:
                execute("COMMIT")
                execute("BEGIN IMMEDIATE")
        execute("COMMIT")


class RawJson(Subject):
    """A dict loaded with ``json.load`` and saved with ``json.dumps`` + write + fsync."""

    label = "raw json"
    baseline = "raw json"
    durable_each = "fsynced file (in place, not atomic)"
    durable_batch = "fsynced once at the end"
    encoding = "one JSON document"
    rewrites_whole_file = True
    suffix = ".json"

    def __init__(self) -> None:
        self._paths: dict[int, Path] = {}

    def open(self, path: Path, batched: bool) -> Any:
        try:
            with open(path, "rb") as f:
                data: dict[str, Any] = json.load(f)
        except FileNotFoundError:
            data = {}
        self._paths[id(data)] = path
        return data

    def commit(self, m: Any) -> None:
        with open(self._paths[id(m)], "wb") as f:
            f.write(json.dumps(m, ensure_ascii=False).encode())
            f.flush()
            os.fsync(f.fileno())

    commit_each = commit

    def commit_batch(self, m: Any) -> None:
        pass  # one write at the end, like a snapshot dict's flush()

    def close(self, m: Any) -> None:
        self.commit(m)
        del self._paths[id(m)]


class Persist(Subject):
    """One of persistdict's backends, opened with ``persistdict.open``."""

    def __init__(
        self,
        label: str,
        backend: str,
        *,
        suffix: str = "",
        url: str | None = None,
        durable_each: str,
        durable_batch: str = "",
        baseline: str = "raw sqlite3",
        snapshot: bool = False,
        options: dict[str, Any] | None = None,
    ) -> None:
        options = options or {}
        self.label = label
        self.backend = backend
        self.suffix = suffix
        self.url = url
        self.durable_each = durable_each
        self.durable_batch = durable_batch or Subject.durable_batch
        self.baseline = baseline
        self.rewrites_whole_file = snapshot
        self.options = options
        codec = persistdict.serializers.serializer_for(options.get("serializer"))
        self.encoding = (
            "JSON file (one key per line)" if backend == "json" else f"{codec!r} per value"
        )
        self.persistent = True

    def available(self) -> str | None:
        try:
            persistdict.backends.backend_class(self.backend)
        except (ImportError, ValueError) as exc:
            return f"the {self.backend} backend can't be loaded here ({exc})"
        if self.url is not None:
            probe = Path(f"probe-{os.getpid()}")
            try:
                with self.open(probe, batched=False) as d:
                    len(d)
                self.remove(probe)
            except Exception as exc:
                return f"{self.url}: {type(exc).__name__}: {exc}"
        return None

    def _target(self, path: Path) -> tuple[str, dict[str, Any]]:
        if self.url is None:
            return str(path), {}
        # Servers: one table per store, named from the whole path the runner chose (in a fresh
        # temp folder), so concurrent runs, such as the smoke test, never share a table.
        digest = hashlib.blake2b(str(path.resolve()).encode(), digest_size=6).hexdigest()
        return self.url, {"table": f"bench_{digest}"}

    def open(self, path: Path, batched: bool, flag: str = "c") -> Any:
        target, extra = self._target(path)
        options = {**self.options, **extra}
        if batched and self.backend in _TAKES_COMMIT_EVERY:
            options["commit_every"] = BATCH
        return persistdict.open(target, flag, backend=self.backend, **options)

    def commit(self, m: Any) -> None:
        m.flush()

    def commit_each(self, m: Any) -> None:
        if self.backend in ("json", "dbm"):
            m.flush()

    def commit_batch(self, m: Any) -> None:
        # sqlite and redis commit by themselves (commit_every); a JSON file is written once at
        # the end; lmdb and postgres batch in fill().
        if self.backend == "dbm":
            m.flush()

    def fill(self, m: Any, items: list[tuple[str, Any]]) -> None:
        if self.backend not in _BATCHES_IN_TRANSACTIONS:
            super().fill(m, items)
            return
        for start in range(0, len(items), BATCH):
            with m.transaction():
                for k, v in items[start : start + BATCH]:
                    m[k] = v

    def delete_batched(self, m: Any, keys: list[str]) -> None:
        if self.backend not in _BATCHES_IN_TRANSACTIONS:
            super().delete_batched(m, keys)
            return
        for start in range(0, len(keys), BATCH):
            with m.transaction():
                for k in keys[start : start + BATCH]:
                    del m[k]

    def remove(self, path: Path) -> None:
        if self.url is None:
            super().remove(path)
        elif self.backend == "postgres":  # flag="n" would leave an empty table behind
            import psycopg

            table = self._target(path)[1]["table"]
            with psycopg.connect(self.url, autocommit=True) as cx:
                # The backend's row-count side table and trigger function go with the table.
                cx.execute(f'DROP TABLE IF EXISTS "{table}", "{table}__count"')
                cx.execute(f'DROP FUNCTION IF EXISTS "{table}__count_fn"')
        else:  # an emptied Redis hash is gone
            with self.open(path, batched=False, flag="n"):
                pass

    def size(self, path: Path) -> int | None:
        return None if self.url is not None else super().size(path)


# How persistdict batches one-by-one writes on each backend: commit_every where the backend
# takes it, else a transaction() per batch (not on snapshot files: each would copy the dict).
_TAKES_COMMIT_EVERY = ("sqlite", "redis")
_BATCHES_IN_TRANSACTIONS = ("lmdb", "postgres")


class SqliteDictSubject(Subject):
    label = "sqlitedict"
    durable_each = "committed (commit() per write, WAL, synchronous=NORMAL)"
    durable_batch = f"commit() every {BATCH} (WAL, NORMAL)"
    encoding = "JSON (stdlib)"

    def available(self) -> str | None:
        return _missing("sqlitedict")

    def open(self, path: Path, batched: bool) -> Any:
        from sqlitedict import SqliteDict

        d = SqliteDict(
            str(path),
            tablename=TABLE,
            journal_mode="WAL",
            encode=_ENCODE,
            decode=_DECODE,
            outer_stack=False,
        )
        # sqlitedict leaves synchronous at SQLite's default (FULL); match persistdict's.
        d.conn.execute("PRAGMA synchronous=NORMAL")
        return d

    def commit(self, m: Any) -> None:
        m.commit()

    commit_each = commit

    def iter_items(self, m: Any) -> None:
        for _ in m.iteritems():
            pass


class DiskcacheSubject(Subject):
    label = "diskcache Index"
    durable_each = "committed (WAL, synchronous=NORMAL)"
    durable_batch = f"transact() per {BATCH} writes"
    encoding = "pickle (diskcache Disk)"
    suffix = ".dc"

    def available(self) -> str | None:
        return _missing("diskcache")

    def open(self, path: Path, batched: bool) -> Any:
        from diskcache import Index

        return Index(str(path))

    def close(self, m: Any) -> None:
        m.cache.close()

    def fill(self, m: Any, items: list[tuple[str, Any]]) -> None:
        for start in range(0, len(items), BATCH):
            with m.transact():
                for k, v in items[start : start + BATCH]:
                    m[k] = v

    def update(self, m: Any, batch: dict[str, Any]) -> None:
        with m.transact():  # Index.update alone commits per key
            m.update(batch)


class ShelveSubject(Subject):
    label = "shelve (dbm)"
    durable_each = "sync() per write (dbm: not fsynced)"
    durable_batch = f"sync() every {BATCH} (dbm: not fsynced)"
    encoding = "pickle"
    suffix = ".shelf"
    rewrites_whole_file = True  # dbm.dumb's sync() rewrites its whole index

    def __init__(self) -> None:
        import dbm
        import importlib

        for name in dbm._names:  # type: ignore[attr-defined]  # dbm.open's order of preference
            try:
                importlib.import_module(name)
            except ImportError:
                continue
            self.label = f"shelve ({name})"
            break

    def open(self, path: Path, batched: bool) -> Any:
        import shelve

        return shelve.open(str(path), "c")

    def commit(self, m: Any) -> None:
        m.sync()

    commit_each = commit


class LmdbmSubject(Subject):
    """lmdbm opened with ``sync=False``: commits reach the OS, not the disk, as with WAL NORMAL.

    With LMDB's default ``sync=True`` every one-by-one write would also fsync (about 190 µs
    here), which is the durability of ``synchronous=FULL``, not of the rows it is compared with;
    ``sync=True`` makes that row, for the LMDB tables of bench_engines.py.
    """

    label = "lmdbm"
    durable_each = "committed (LMDB sync=False: not fsynced)"
    durable_batch = f"each write its own txn, env.sync() every {BATCH}"
    encoding = "JSON (stdlib)"
    suffix = ".lmdbm"

    def __init__(self, sync: bool = False) -> None:
        self.sync = sync
        if sync:
            self.label = "lmdbm sync"
            self.durable_each = "committed and fsynced (LMDB sync=True)"
            self.durable_batch = f"update() of {BATCH} items per fsynced txn"

    def fill(self, m: Any, items: list[tuple[str, Any]]) -> None:
        if not self.sync:
            super().fill(m, items)
            return
        # One fsync per write would take minutes: lmdbm's own batch, update(), instead.
        for start in range(0, len(items), BATCH):
            m.update(items[start : start + BATCH])

    def commit(self, m: Any) -> None:
        m.sync()

    def available(self) -> str | None:
        return _missing("lmdbm")

    def open(self, path: Path, batched: bool) -> Any:
        from lmdbm import Lmdb

        class JsonLmdb(Lmdb):  # type: ignore[misc]
            def _pre_key(self, key: str) -> bytes:
                return key.encode()

            def _post_key(self, key: bytes) -> str:
                return key.decode()

            def _pre_value(self, value: Any) -> bytes:
                return _ENCODE(value).encode()

            def _post_value(self, value: bytes) -> Any:
                return _DECODE(value.decode())

        return JsonLmdb.open(str(path), "c", map_size=2**30, sync=self.sync)


class RawLmdb(Subject):
    """py-lmdb itself, laid out as persistdict's lmdb backend: a named database ``items``,
    UTF-8 keys, the JSON codec of the other rows; a write transaction per durable write or per
    batch, a read transaction per get (py-lmdb reuses it), one for a whole iteration."""

    encoding = "JSON (stdlib)"
    suffix = ".rawlmdb"

    def __init__(self, sync: bool = False) -> None:
        self.sync = sync
        self.label = "raw py-lmdb sync" if sync else "raw py-lmdb"
        self.baseline = self.label
        how = "fsynced (sync=True)" if sync else "not fsynced (sync=False)"
        self.durable_each = f"committed, {how}"
        self.durable_batch = f"one write txn per {BATCH}, {how}"

    def available(self) -> str | None:
        return _missing("lmdb")

    def open(self, path: Path, batched: bool) -> Any:
        import lmdb

        env = lmdb.open(str(path), map_size=2**30, max_dbs=4, sync=self.sync)
        return env, env.open_db(TABLE.encode())

    def close(self, m: Any) -> None:
        m[0].close()

    def fill(self, m: Any, items: list[tuple[str, Any]]) -> None:
        env, db = m
        for start in range(0, len(items), BATCH):
            with env.begin(write=True, db=db) as txn:
                for k, v in items[start : start + BATCH]:
                    txn.put(k.encode(), _ENCODE(v).encode())

    def set_each(self, m: Any, items: list[tuple[str, Any]]) -> None:
        env, db = m
        for k, v in items:
            with env.begin(write=True, db=db) as txn:
                txn.put(k.encode(), _ENCODE(v).encode())

    def update(self, m: Any, batch: dict[str, Any]) -> None:
        env, db = m
        rows = [(k.encode(), _ENCODE(v).encode()) for k, v in batch.items()]
        with env.begin(write=True, db=db) as txn:
            txn.cursor().putmulti(rows)

    def delete_batched(self, m: Any, keys: list[str]) -> None:
        env, db = m
        for start in range(0, len(keys), BATCH):
            with env.begin(write=True, db=db) as txn:
                for k in keys[start : start + BATCH]:
                    txn.delete(k.encode())

    def get(self, m: Any, keys: list[str]) -> None:
        env, db = m
        for k in keys:
            with env.begin(db=db) as txn:
                _DECODE(txn.get(k.encode()).decode())

    def contains(self, m: Any, keys: list[str]) -> None:
        env, db = m
        for k in keys:
            with env.begin(db=db) as txn:
                txn.get(k.encode()) is not None  # noqa: B015 - timed lookup

    def iter_keys(self, m: Any) -> None:
        env, db = m
        with env.begin(db=db) as txn:
            for k in txn.cursor().iternext(keys=True, values=False):
                k.decode()

    def iter_items(self, m: Any) -> None:
        env, db = m
        with env.begin(db=db) as txn:
            for k, v in txn.cursor():
                k.decode()
                _DECODE(v.decode())

    def length(self, m: Any, calls: int) -> None:
        env, db = m
        for _ in range(calls):
            with env.begin(db=db) as txn:
                txn.stat(db)["entries"]


class RawRedis(Subject):
    """redis-py doing what persistdict's redis backend sends: HGET, HEXISTS, HLEN and HSET per
    call, HSCAN pages of 1,000 to iterate, pipelines of 1,000-field HSETs for batches.

    Deleting does the job ``del d[k]`` does: say at once whether the key was there (KeyError).
    That takes one round trip per key, whoever sends it, so the floor is an HDEL per key with
    its reply checked; a pipeline of HDELs learns that only after the whole batch is sent."""

    label = "raw redis-py"
    baseline = "raw redis-py"
    durable_each = "acknowledged by the server (its appendfsync setting)"
    durable_batch = (
        f"a pipeline of HSETs per {BATCH}; deletes: an HDEL per key, its reply checked "
        "(a missing key known at once, as del d[k]'s KeyError needs)"
    )
    encoding = "JSON (stdlib)"

    def available(self) -> str | None:
        return _unreachable("redis", REDIS_URL, lambda r: r.Redis.from_url(REDIS_URL).ping())

    def open(self, path: Path, batched: bool) -> Any:
        import redis

        name = "bench_raw_" + hashlib.blake2b(str(path).encode(), digest_size=6).hexdigest()
        return redis.Redis.from_url(REDIS_URL), name

    def close(self, m: Any) -> None:
        m[0].close()

    def remove(self, path: Path) -> None:
        client, name = self.open(path, batched=False)
        client.delete(name)
        client.close()

    def size(self, path: Path) -> int | None:
        return None

    def _hset_batches(self, m: Any, rows: list[tuple[str, Any]], transaction: bool) -> None:
        client, name = m
        pipe = client.pipeline(transaction=transaction)
        for start in range(0, len(rows), BATCH):
            pipe.hset(name, mapping={k: _ENCODE(v) for k, v in rows[start : start + BATCH]})
            if not transaction:
                pipe.execute()
        if transaction:
            pipe.execute()

    def fill(self, m: Any, items: list[tuple[str, Any]]) -> None:
        self._hset_batches(m, items, transaction=False)

    def update(self, m: Any, batch: dict[str, Any]) -> None:
        self._hset_batches(m, list(batch.items()), transaction=True)

    def set_each(self, m: Any, items: list[tuple[str, Any]]) -> None:
        client, name = m
        for k, v in items:
            client.hset(name, k, _ENCODE(v))

    def get(self, m: Any, keys: list[str]) -> None:
        client, name = m
        for k in keys:
            _DECODE(client.hget(name, k).decode())

    def contains(self, m: Any, keys: list[str]) -> None:
        client, name = m
        for k in keys:
            client.hexists(name, k)

    def iter_keys(self, m: Any) -> None:
        client, name = m
        for k, _ in client.hscan_iter(name, count=1000):
            k.decode()

    def iter_items(self, m: Any) -> None:
        client, name = m
        for k, v in client.hscan_iter(name, count=1000):
            k.decode()
            _DECODE(v.decode())

    def length(self, m: Any, calls: int) -> None:
        client, name = m
        for _ in range(calls):
            client.hlen(name)

    def delete_batched(self, m: Any, keys: list[str]) -> None:
        client, name = m
        for k in keys:
            if not client.hdel(name, k):
                raise KeyError(k)


class RawPostgres(Subject):
    """psycopg doing what persistdict's postgres backend sends, on a table of the same shape:
    one autocommitted statement per get, `in`, len() or durable write; a transaction of
    single-row upserts per batch; COPY into a staging table plus one upsert for update();
    keyset pages of 1,000 rows to iterate.

    Its table has no row-count triggers (so its len() is a count(*)): persistdict's fire once
    per writing statement, server work that is most of the difference on batched writes."""

    label = "raw psycopg"
    baseline = "raw psycopg"
    durable_each = "committed (server's synchronous_commit)"
    durable_batch = (
        f"a transaction per {BATCH} writes, each delete's rowcount checked; a table without "
        "persistdict's row-count triggers (len() is a count(*))"
    )
    encoding = "JSON text (+ a jsonb column)"

    def available(self) -> str | None:
        return _unreachable("psycopg", POSTGRES_URL, lambda pg: pg.connect(POSTGRES_URL).close())

    @staticmethod
    def _table(path: Path) -> str:
        return "bench_raw_" + hashlib.blake2b(str(path).encode(), digest_size=6).hexdigest()

    def open(self, path: Path, batched: bool) -> Any:
        import psycopg

        from persistdict.backends.postgres_table import _DOCUMENT

        table = self._table(path)
        cx = psycopg.connect(POSTGRES_URL, autocommit=True)
        cx.execute(
            f'CREATE TABLE IF NOT EXISTS {table} (key text COLLATE "C" PRIMARY KEY, '
            f"value jsonb GENERATED ALWAYS AS ({_DOCUMENT}) STORED, raw text NOT NULL)"
        )
        upsert = (
            f"INSERT INTO {table} (key, raw) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET raw = excluded.raw"
        )
        return cx, table, upsert

    def close(self, m: Any) -> None:
        m[0].close()

    def remove(self, path: Path) -> None:
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as cx:
            cx.execute(f"DROP TABLE IF EXISTS {self._table(path)}")

    def size(self, path: Path) -> int | None:
        return None

    def fill(self, m: Any, items: list[tuple[str, Any]]) -> None:
        cx, _, upsert = m
        for start in range(0, len(items), BATCH):
            with cx.transaction():
                for k, v in items[start : start + BATCH]:
                    cx.execute(upsert, (k, _ENCODE(v)))

    def set_each(self, m: Any, items: list[tuple[str, Any]]) -> None:
        cx, _, upsert = m
        for k, v in items:
            cx.execute(upsert, (k, _ENCODE(v)))

    def update(self, m: Any, batch: dict[str, Any]) -> None:
        cx, table, _ = m
        with cx.transaction():
            cx.execute("CREATE TEMP TABLE stage (key text, raw text) ON COMMIT DROP")
            with cx.cursor().copy("COPY stage (key, raw) FROM STDIN") as copy:
                for k, v in batch.items():
                    copy.write_row((k, _ENCODE(v)))
            cx.execute(
                f"INSERT INTO {table} (key, raw) SELECT key, raw FROM stage "
                "ON CONFLICT (key) DO UPDATE SET raw = excluded.raw"
            )

    def delete_batched(self, m: Any, keys: list[str]) -> None:
        cx, table, _ = m
        sql = f"DELETE FROM {table} WHERE key = %s"
        for start in range(0, len(keys), BATCH):
            with cx.transaction():
                for k in keys[start : start + BATCH]:
                    if not cx.execute(sql, (k,)).rowcount:  # del d[k]'s KeyError, as persistdict
                        raise KeyError(k)

    def get(self, m: Any, keys: list[str]) -> None:
        cx, table, _ = m
        sql = f"SELECT raw FROM {table} WHERE key = %s"
        for k in keys:
            _DECODE(cx.execute(sql, (k,)).fetchone()[0])

    def contains(self, m: Any, keys: list[str]) -> None:
        cx, table, _ = m
        sql = f"SELECT 1 FROM {table} WHERE key = %s"
        for k in keys:
            cx.execute(sql, (k,)).fetchone() is not None  # noqa: B015 - timed lookup

    def _pages(self, m: Any, columns: str) -> Any:
        cx, table, _ = m
        first = f"SELECT {columns} FROM {table} ORDER BY key LIMIT 1000"
        after = f"SELECT {columns} FROM {table} WHERE key > %s ORDER BY key LIMIT 1000"
        rows = cx.execute(first).fetchall()
        while rows:
            yield rows
            if len(rows) < 1000:
                return
            rows = cx.execute(after, (rows[-1][0],)).fetchall()

    def iter_keys(self, m: Any) -> None:
        for rows in self._pages(m, "key"):
            for _ in rows:
                pass

    def iter_items(self, m: Any) -> None:
        for rows in self._pages(m, "key, raw"):
            for _, v in rows:
                _DECODE(v)

    def length(self, m: Any, calls: int) -> None:
        cx, table, _ = m
        for _ in range(calls):
            cx.execute(f"SELECT count(*) FROM {table}").fetchone()


def _unreachable(module: str, url: str, probe: Any) -> str | None:
    """Why a raw client can't run here: ``module`` missing, or ``probe(module)`` failing."""
    missing = _missing(module)
    if missing is not None:
        return missing
    try:
        probe(__import__(module))
    except Exception as exc:
        return f"{url}: {type(exc).__name__}: {exc}"
    return None


def engine_groups() -> list[tuple[str, list[Subject]]]:
    """The tables of bench_engines.py: each persistdict backend first, then the raw engine
    under it (the ratios' baseline), then the peer libraries built on the same engine."""
    stdlib = {"serializer": persistdict.JsonSerializer()}

    def lmdb(sync: bool) -> Persist:
        how = "fsynced (sync=True)" if sync else "not fsynced (sync=False)"
        return Persist(
            "persistdict lmdb sync" if sync else "persistdict lmdb",
            "lmdb",
            suffix=".lmdb",
            durable_each=f"committed, {how}",
            durable_batch=f"transaction() per {BATCH} writes, {how}",
            baseline="raw py-lmdb sync" if sync else "raw py-lmdb",
            options={"sync": sync, **stdlib},
        )

    sqlite_each = "committed (WAL, synchronous=NORMAL)"
    return [
        ("LMDB sync=False", [lmdb(False), RawLmdb(False), LmdbmSubject(False)]),
        ("LMDB sync=True", [lmdb(True), RawLmdb(True), LmdbmSubject(True)]),
        (
            "SQLite",
            [
                Persist(
                    "persistdict sqlite, stdlib json",
                    "sqlite",
                    suffix=".db",
                    durable_each=sqlite_each,
                    options=stdlib,
                ),
                RawSqlite(),
                SqliteDictSubject(),
                DiskcacheSubject(),
            ],
        ),
        (
            "Redis",
            [
                Persist(
                    "persistdict redis",
                    "redis",
                    url=REDIS_URL,
                    durable_each="acknowledged by the server (its appendfsync setting)",
                    durable_batch=f"pipelined, flushed every {BATCH}",
                    baseline="raw redis-py",
                    options=stdlib,
                ),
                RawRedis(),
            ],
        ),
        (
            "PostgreSQL",
            [
                Persist(
                    "persistdict postgres",
                    "postgres",
                    url=POSTGRES_URL,
                    durable_each="committed (server's synchronous_commit)",
                    durable_batch=f"transaction() per {BATCH} writes",
                    baseline="raw psycopg",
                    options=stdlib,
                ),
                RawPostgres(),
            ],
        ),
    ]


def _missing(module: str) -> str | None:
    try:
        __import__(module)
    except ImportError:
        return f"{module} is not installed (pip install 'python-persistdict[bench]')"
    return None


def all_subjects() -> list[Subject]:
    """Every row, baselines first; unavailable ones are reported and skipped by the runner."""
    sqlite_each = "committed (WAL, synchronous=NORMAL)"
    subjects: list[Subject] = [
        PlainDict(),
        RawSqlite(),
        RawJson(),
        Persist("persistdict sqlite", "sqlite", suffix=".db", durable_each=sqlite_each),
        Persist(
            "persistdict sqlite, stdlib json",
            "sqlite",
            suffix=".db",
            durable_each=sqlite_each,
            options={"serializer": persistdict.JsonSerializer()},
        ),
        Persist(
            "persistdict sqlite FULL",
            "sqlite",
            suffix=".db",
            durable_each="committed, WAL fsynced (synchronous=FULL)",
            durable_batch=f"committed every {BATCH} (WAL, FULL)",
            options={"synchronous": "FULL"},
        ),
        Persist(
            "persistdict json",
            "json",
            suffix=".json",
            durable_each="flush() per write: atomic replace + fsync",
            durable_batch="one flush() at the end",
            baseline="raw json",
            snapshot=True,
        ),
        Persist(
            "persistdict dbm",
            "dbm",
            suffix=".dbm",
            durable_each="flush() per write (dbm sync, not fsynced)",
            durable_batch=f"flush() every {BATCH}",
            snapshot=True,  # dbm.dumb's sync() rewrites its whole index
        ),
        Persist(
            "persistdict lmdb",
            "lmdb",
            suffix=".lmdb",
            durable_each="committed (LMDB sync=False, like lmdbm here)",
            durable_batch=f"transaction() per {BATCH} writes (sync=False)",
            options={"sync": False},
        ),
        Persist(
            "persistdict redis",
            "redis",
            url=REDIS_URL,
            durable_each="acknowledged by the server (its appendfsync setting)",
            durable_batch=f"pipelined, flushed every {BATCH}",
        ),
        Persist(
            "persistdict postgres",
            "postgres",
            url=POSTGRES_URL,
            durable_each="committed (server's synchronous_commit)",
            durable_batch=f"transaction() per {BATCH} writes",
        ),
        SqliteDictSubject(),
        DiskcacheSubject(),
        ShelveSubject(),
        LmdbmSubject(),
    ]
    return subjects
