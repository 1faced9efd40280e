"""Without Redis and PostgreSQL the suite still runs clean: server tests skip with the reason
(and fail instead under ``PERSISTDICT_REQUIRE_SERVERS=1``), and nothing errors at teardown."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import subprocess_env

_ROOT = Path(__file__).resolve().parents[2]
# Every test module that talks to a server; the throwaway redis-server tests start their own.
_SERVER_TESTS = [
    "tests/backends/test_postgres.py",
    "tests/backends/test_redis.py",
    "tests/servers",
    "tests/migrate/test_server_destinations.py",
]


def _run_without_servers(required: str) -> str:
    env = subprocess_env()
    # Nothing listens on port 1: connecting is refused at once.
    env["PERSISTDICT_REDIS_URL"] = "redis://127.0.0.1:1/0"
    env["PERSISTDICT_POSTGRES_URL"] = "postgresql://postgres@127.0.0.1:1/test"
    env["PERSISTDICT_REQUIRE_SERVERS"] = required
    env.pop("PERSISTDICT_TEST_SESSION", None)
    args = [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider"]
    args += [*_SERVER_TESTS, f"--deselect=tests/servers/{Path(__file__).name}"]
    run = subprocess.run(
        args, env=env, cwd=_ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    return run.stdout + run.stderr


def _counts(output: str) -> dict[str, int]:
    summary = output.strip().splitlines()[-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", summary)}


def test_without_servers_the_server_tests_skip_with_the_reason_and_nothing_errors() -> None:
    output = _run_without_servers("")
    counts = _counts(output)
    assert not {"error", "errors"} & set(counts), output[-3000:]
    assert "failed" not in counts, output[-3000:]
    assert counts["skipped"] >= 100
    assert "no postgres server at postgresql://postgres@127.0.0.1:1/test" in output
    assert "no redis server at redis://127.0.0.1:1/0" in output


def test_without_servers_they_fail_when_servers_are_required() -> None:
    output = _run_without_servers("1")
    counts = _counts(output)
    assert not {"error", "errors"} & set(counts), output[-3000:]
    assert counts["failed"] >= 100
    skips = [line for line in output.splitlines() if line.startswith("SKIPPED")]
    assert not [line for line in skips if " server at " in line]
    assert "PERSISTDICT_REQUIRE_SERVERS=1 makes this a failure" in output
