"""Redis: waiting for another client's transaction(), and the options that bound the wait."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import persistdict
from persistdict import LockedError
from tests.helpers import namespace, server_url


def test_timeout_zero_does_not_wait(tmp_path: Path) -> None:
    prefix = namespace("redis", tmp_path)
    url = server_url("redis")
    with (
        persistdict.open(url, prefix=prefix) as d,
        persistdict.open(url, prefix=prefix, timeout=0) as other,
    ):
        with d.transaction():
            d["held"] = 1
            for attempt in (
                lambda: other.__setitem__("k", 1),
                lambda: other.update({"k": 1}),
                other.clear,
                lambda: other.pop("held", None),
            ):
                started = time.monotonic()
                with pytest.raises(LockedError, match="another client's transaction"):
                    attempt()
                assert time.monotonic() - started < 0.5
        other["k"] = 1
        assert dict(d) == {"held": 1, "k": 1}


@pytest.mark.parametrize("lock_ttl", ["0", "-1", "inf", "nan"])
def test_a_lock_ttl_that_frees_nothing_is_refused_before_connecting(lock_ttl: str) -> None:
    # Nothing listens on port 1: reaching the connection would raise ConnectionError instead.
    with pytest.raises(ValueError, match="lock_ttl must be a finite number of seconds > 0"):
        persistdict.open(f"redis://:hunter2@127.0.0.1:1/0?lock_ttl={lock_ttl}")
