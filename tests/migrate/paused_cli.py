"""The real ``persistdict`` command line, pausing after every batch a convert writes.

Run as ``python paused_cli.py convert SRC DST ...``: after each batch it prints
``batch N`` (keys written so far) and waits for a line on stdin, so a test can kill or signal
it at an exact point of the copy. Everything else is the command line as installed.
"""

from __future__ import annotations

import sys
from typing import Any

import persistdict.cli
from persistdict import migrate

_copy = migrate.copy


def _paused_copy(*args: Any, **kwargs: Any) -> migrate.Summary:
    def pause(done: int, total: int | None, seconds: float) -> None:
        print(f"batch {done}", flush=True)
        sys.stdin.readline()

    kwargs["progress"] = pause
    return _copy(*args, **kwargs)


migrate.copy = _paused_copy  # type: ignore[assignment]
sys.exit(persistdict.cli.main(sys.argv[1:]))
