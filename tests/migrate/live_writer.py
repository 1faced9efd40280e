"""A live writer for tests: moves amounts between accounts of a store, keeping their total.

Run as ``python live_writer.py KIND PATH SEED``. It opens the store only when the first
``go N`` line arrives on stdin, then for each ``go N`` does N transfers (each one transaction
of the library that owns the file), checkpoints the WAL into the main file every few
transfers as any busy SQLite program does, and answers ``done``. ``quit`` ends it.
"""

from __future__ import annotations

import random
import sqlite3
import sys
from typing import Any


def open_store(kind: str, path: str) -> tuple[Any, Any]:
    """The store and a function doing one transfer of ``amount`` from key ``a`` to ``b``."""
    if kind == "persistdict":
        import persistdict

        d: Any = persistdict.open(path)

        def transfer(a: str, b: str, amount: int) -> None:
            with d.transaction():
                d[a] = {**d[a], "n": d[a]["n"] - amount}
                d[b] = {**d[b], "n": d[b]["n"] + amount}

        return d, transfer
    if kind == "sqlitedict":
        import sqlitedict

        sd: Any = sqlitedict.SqliteDict(path, autocommit=False, journal_mode="WAL")

        def transfer(a: str, b: str, amount: int) -> None:
            va, vb = sd[a], sd[b]
            sd[a] = {**va, "n": va["n"] - amount}
            sd[b] = {**vb, "n": vb["n"] + amount}
            sd.commit()

        return sd, transfer
    import diskcache

    cache: Any = diskcache.Cache(path)

    def transfer(a: str, b: str, amount: int) -> None:
        with cache.transact():
            cache[a] = {**cache[a], "n": cache[a]["n"] - amount}
            cache[b] = {**cache[b], "n": cache[b]["n"] + amount}

    return cache, transfer


def main() -> None:
    kind, path, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    db_file = path + "/cache.db" if kind == "diskcache" else path
    rng = random.Random(seed)
    store: Any = None
    keys: list[str] = []
    for line in sys.stdin:
        if line.startswith("quit"):
            break
        if store is None:
            store, transfer = open_store(kind, path)
            keys = sorted(store)
            checkpointer = sqlite3.connect(db_file, isolation_level=None, timeout=30)
        for i in range(int(line.split()[1])):
            a, b = rng.sample(keys, 2)
            transfer(a, b, rng.randint(1, 50))
            if i % 10 == 9:
                checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        print("done", flush=True)
    if store is not None:
        store.close()
        checkpointer.close()


if __name__ == "__main__":
    main()
