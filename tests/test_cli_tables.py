"""The command line on a SQLite file or PostgreSQL database without the table asked for."""

from __future__ import annotations

from pathlib import Path

import pytest

import persistdict
from tests.helpers import namespace, server_url
from tests.test_cli import assert_one_line_error, run


@pytest.fixture
def big_db(tmp_path: Path) -> Path:
    target = tmp_path / "big.db"
    for table in ("events", "users"):
        with persistdict.open(target, table=table) as d:
            d["k"] = table
    return target


@pytest.mark.parametrize(
    "command",
    [["dump"], ["keys"], ["get", "k"], ["check"], ["info"], ["del", "k"]],
    ids=lambda command: command[0],
)
def test_a_mistyped_table_is_a_usage_error_naming_the_tables(
    big_db: Path, command: list[str]
) -> None:
    before = big_db.read_bytes()
    result = run(command[0], big_db, *command[1:], "--table", "evnts")
    assert_one_line_error(
        result, 2, f"{str(big_db)!r} has no table 'evnts'", "its tables: events, users", "--table"
    )
    assert result.stdout == ""  # not `{}`: a backup of a mistyped table must not look empty
    assert big_db.read_bytes() == before


def test_the_table_that_is_there_still_works(big_db: Path) -> None:
    result = run("dump", big_db, "--table", "events")
    assert result.returncode == 0, result
    assert result.stdout == '{\n  "k": "events"\n}\n'


def test_a_missing_postgres_table_is_a_usage_error_naming_the_tables(tmp_path: Path) -> None:
    url = server_url("postgres")
    table = namespace("postgres", tmp_path)
    with persistdict.open(url, table=table) as d:
        d["k"] = 1
    for command in (["dump"], ["keys"], ["check"]):
        result = run(command[0], url, *command[1:], "--table", table + "x")
        assert_one_line_error(result, 2, f"has no table '{table}x'", "its tables: ", "--table")
        assert result.stdout == ""
