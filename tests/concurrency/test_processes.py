"""Many processes on one store: exact counters, one winner, each job popped once.

The stores are the conformance cases whose backend takes several writing processes at once
(sqlite here; lmdb, redis and postgres as their cases appear in tests/backends). Workers are
fresh interpreters. ``PERSISTDICT_STRESS=N`` multiplies the increments.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from persistdict.testing import MappingConformance
from tests.concurrency.harness import (
    PROCESSES,
    case_id,
    cases_where,
    count_in_processes,
    create_in_processes,
    drain_in_processes,
    shares_writers,
    stress,
    visible_from_another_process,
)

# Only the stores several processes may write at once: the others are not collected here.
CASES = cases_where(shares_writers)


def _shared_store(case: type[MappingConformance], folder: Path) -> None:
    """Create the store, and check that another process's ``open_dict(folder)`` reaches it."""
    with case().open_dict(folder) as d:
        d.clear()
        d["marker"] = 1
    assert visible_from_another_process(case, folder), (
        f"{case.__name__}.open_dict(folder) gives each process its own store"
    )


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_processes_count_exactly_through_transactions(
    case: type[MappingConformance], tmp_path: Path
) -> None:
    _shared_store(case, tmp_path)
    n = 150 * stress()
    done, errors = count_in_processes(case, tmp_path, n)
    # Any error fails, "database is locked" above all: the busy timeout must absorb it.
    assert errors == []
    assert done == [n] * PROCESSES
    with case().open_dict(tmp_path, flag="r") as d:
        assert d["n"] == PROCESSES * n


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_setdefault_has_one_winner_and_popitem_pops_each_key_once(
    case: type[MappingConformance], tmp_path: Path
) -> None:
    _shared_store(case, tmp_path)
    jobs = {f"job-{i:05d}": i for i in range(100 * stress())}
    with case().open_dict(tmp_path) as d:
        del d["marker"]
        d.update(jobs)
    results, errors = drain_in_processes(case, tmp_path)
    assert errors == []
    winners = {winner for winner, _ in results}
    assert len(winners) == 1
    popped = [key for _, keys in results for key in keys]
    assert sorted(popped) == sorted(jobs)  # none lost, none popped twice
    with case().open_dict(tmp_path, flag="r") as d:
        assert len(d) == 0


def test_processes_create_one_sqlite_file_at_once(tmp_path: Path) -> None:
    # Regression: PRAGMA journal_mode=WAL on a file others are creating at the same moment
    # failed at once with "database is locked" (SQLite's busy handler does not cover it).
    files = 60 * stress()
    done, errors = create_in_processes(tmp_path, files)
    assert errors == []
    assert done == [files] * PROCESSES
    for i in range(files):
        cx = sqlite3.connect(tmp_path / f"new-{i}.db")
        try:
            (raw,) = cx.execute("SELECT value FROM items WHERE key = 'n'").fetchone()
            assert json.loads(raw) == PROCESSES
        finally:
            cx.close()
