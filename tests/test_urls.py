"""Opening by URL: parsing, options in the query string or as keywords, password masking,
detection of the server backends, and their drivers imported only when used."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import persistdict
from persistdict.detect import detect_backend
from persistdict.urls import mask_password, parse_bool, url_options
from tests.helpers import namespace, server_url, subprocess_env

_CONVERTERS = {"db": int, "timeout": float, "sync": parse_bool, "prefix": str}


def test_query_options_and_keywords_merge_under_the_same_names() -> None:
    url = "redis://u:pw@h:1/0?timeout=2.5&sync=off"
    got = url_options(url, {"prefix": "app:", "db": None}, _CONVERTERS)
    assert got == {"timeout": 2.5, "sync": False, "prefix": "app:"}
    assert url_options(url, {"timeout": 2.5}, _CONVERTERS)["timeout"] == 2.5  # same value: fine


@pytest.mark.parametrize(
    ("url", "kwargs", "message"),
    [
        ("redis://u:pw@h/0?colour=red", {}, r"unknown option 'colour'.*accepted: db, prefix"),
        ("redis://u:pw@h/0?db=x", {}, r"option db='x' is invalid"),
        ("redis://u:pw@h/0?sync=maybe", {}, r"expected true or false, not 'maybe'"),
        ("redis://u:pw@h/0?timeout=1", {"timeout": 2.0}, r"given twice, as 1.0 in the URL"),
    ],
)
def test_bad_options_name_the_url_with_the_password_masked(
    url: str, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as info:
        url_options(url, kwargs, _CONVERTERS)
    assert "redis://u:***@h/0" in str(info.value)
    assert "pw" not in str(info.value).replace("***", "")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://user:p%40ss@host/1", "rediss://user:***@host/1"),
        (
            "postgresql://app:pw@[::1]:5432/db?sslmode=require",
            "postgresql://app:***@[::1]:5432/db?sslmode=require",
        ),
        ("postgresql://app@db.internal/app", "postgresql://app@db.internal/app"),
        ("unix://:pw@/run/redis.sock?db=2", "unix://:***@/run/redis.sock?db=2"),
    ],
)
def test_mask_password(url: str, shown: str) -> None:
    assert mask_password(url) == shown


@pytest.mark.parametrize(
    ("target", "backend"),
    [
        ("redis://127.0.0.1:6379/0", "redis"),
        ("rediss://cache.example:6380/0", "redis"),
        ("unix:///run/redis.sock", "redis"),
        ("postgresql://app@db.internal/app", "postgres"),
        ("postgres://app@db.internal/app", "postgres"),
        ("lmdb:///data/env.lmdb", "lmdb"),
        ("data/env.lmdb", "lmdb"),
    ],
)
def test_server_and_lmdb_targets_are_detected(target: str, backend: str) -> None:
    assert detect_backend(target) == backend


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:1/zero", r"must be a database number such as /0, not /zero"),
        ("redis://:pw@127.0.0.1:1/1?db=2", r"database given twice, /1 and db=2"),
    ],
)
def test_redis_url_mistakes_are_refused_before_connecting(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        persistdict.open(url)
    assert "pw" not in str(info.value).replace("***", "")


def test_bad_table_names_are_refused_before_any_io() -> None:
    # Nothing listens on port 1: a connection attempt would raise ConnectionError instead.
    for url in ("redis://127.0.0.1:1/0", "postgresql://x@127.0.0.1:1/db"):
        with pytest.raises(ValueError, match="invalid table name 'a-b'"):
            persistdict.open(url, table="a-b")


_LAZY = """
import sys
import persistdict
from persistdict.backends import loaded_classes
loaded_classes()  # imports every built-in backend module, as detection does
with persistdict.open(sys.argv[1] + "/x.db") as d:
    d["a"] = 1
leaked = {"redis", "psycopg", "lmdb"} & set(sys.modules)
assert not leaked, leaked
"""


def test_backend_modules_do_not_import_their_drivers(tmp_path: object) -> None:
    subprocess.run([sys.executable, "-c", _LAZY, str(tmp_path)], env=subprocess_env(), check=True)


_MISSING = """
import sys
sys.modules[sys.argv[1]] = None  # as if the extra were not installed
import persistdict
try:
    persistdict.open(sys.argv[2])
except ImportError as exc:
    print(exc)
"""


@pytest.mark.parametrize(
    ("module", "target", "extra"),
    [
        ("redis", "redis://127.0.0.1:6379/0", "redis"),
        ("psycopg", "postgresql://postgres@127.0.0.1/test", "postgres"),
        ("lmdb", "nowhere/x.lmdb", "lmdb"),
    ],
)
def test_a_missing_driver_names_the_extra(module: str, target: str, extra: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _MISSING, module, target],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"pip install 'python-persistdict[{extra}]'" in out


def _readme_server_urls() -> list[str]:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Redis, PostgreSQL, LMDB", 1)[1].split("###", 1)[0]
    block = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)[0]
    return re.findall(r'persistdict\.open\("([^"]+)"', block)


def test_the_readme_url_examples_parse_and_the_local_ones_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = _readme_server_urls()
    assert [detect_backend(u) for u in urls] == ["redis"] * 3 + ["postgres"] * 2 + ["lmdb"]
    monkeypatch.chdir(tmp_path)
    for url in urls:
        if "127.0.0.1" in url:
            url = url.replace("redis://127.0.0.1:6379/0", server_url("redis"))
            prefix = namespace("redis", tmp_path)
            with persistdict.open(url, table="sessions", prefix=prefix) as d:
                d["s1"] = {"user": "ada"}
                assert d["s1"] == {"user": "ada"}
        elif "://" not in url:
            with persistdict.open(url) as d:
                d["k"] = 1
            assert (tmp_path / url / "data.mdb").exists()


@pytest.mark.parametrize(("required", "outcome"), [("", "1 skipped"), ("1", "1 failed")])
def test_a_missing_server_skips_with_the_reason_or_fails_when_required(
    required: str, outcome: str
) -> None:
    env = subprocess_env()
    env["PERSISTDICT_REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    env["PERSISTDICT_REQUIRE_SERVERS"] = required
    env.pop("PERSISTDICT_TEST_SESSION", None)
    test = "tests/backends/test_redis.py::test_hash_layout_and_url_query_options"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", test],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
    )
    assert outcome in run.stdout
    assert "no redis server at redis://127.0.0.1:1/0" in run.stdout
