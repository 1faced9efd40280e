"""Random operation sequences against a dict model, per backend (see persistdict.testing)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

from persistdict.testing.stateful import machine_for
from tests.backends import (
    test_csv,
    test_dbm,
    test_json,
    test_lmdb,
    test_memory,
    test_pickle,
    test_postgres,
    test_redis,
    test_sqlite,
)

# PERSISTDICT_STATEFUL_EXAMPLES raises the number of sequences for a long run by hand.
_SETTINGS = settings(
    max_examples=int(os.environ.get("PERSISTDICT_STATEFUL_EXAMPLES", "40")),
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Modules, not classes, are imported: a class imported here would be collected twice.
TestJsonStateful = machine_for(test_json.TestJson()).TestCase
TestCsvStateful = machine_for(test_csv.TestCsv()).TestCase
TestPickleStateful = machine_for(test_pickle.TestPickle()).TestCase
TestSqliteStateful = machine_for(test_sqlite.TestSqlite()).TestCase
TestSqliteBatchedStateful = machine_for(test_sqlite.TestSqliteBatched()).TestCase
TestDbmStateful = machine_for(test_dbm.TestDbm()).TestCase
TestMemoryStateful = machine_for(test_memory.TestMemory()).TestCase
TestLmdbStateful = machine_for(test_lmdb.TestLmdb()).TestCase
TestRedisStateful = machine_for(test_redis.TestRedis()).TestCase
TestRedisBatchedStateful = machine_for(test_redis.TestRedisBatched()).TestCase
TestPostgresStateful = machine_for(test_postgres.TestPostgres()).TestCase
TestPostgresPickleStateful = machine_for(test_postgres.TestPostgresPickle()).TestCase
TestSqliteWritebackStateful = machine_for(test_sqlite.TestSqlite(), writeback=True).TestCase
TestDbmWritebackStateful = machine_for(test_dbm.TestDbm(), writeback=True).TestCase
TestRedisWritebackStateful = machine_for(test_redis.TestRedisBatched(), writeback=True).TestCase


# A function, not a module-level loop: the loop variable would stay bound to the last class,
# and pytest collects every unittest.TestCase it finds, whatever its name, so it ran twice.
def _configure(*cases: type) -> None:
    for case in cases:
        case.settings = _SETTINGS


_configure(
    TestJsonStateful,
    TestCsvStateful,
    TestPickleStateful,
    TestSqliteStateful,
    TestSqliteBatchedStateful,
    TestDbmStateful,
    TestMemoryStateful,
    TestLmdbStateful,
    TestRedisStateful,
    TestRedisBatchedStateful,
    TestPostgresStateful,
    TestPostgresPickleStateful,
    TestSqliteWritebackStateful,
    TestDbmWritebackStateful,
    TestRedisWritebackStateful,
)
