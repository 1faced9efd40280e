"""Figures the durability tests gather (trials, faults, cuts), printed at the end of the run.

Each test appends one line; ``conftest.py`` prints them in a "durability evidence" section of
pytest's summary, so a CI log shows what was actually exercised, not just that it passed.
"""

from __future__ import annotations

import os

LINES: list[str] = []


def record(line: str) -> None:
    LINES.append(line)


def knob(name: str, default: int) -> int:
    """An integer from the environment (for long runs by hand), else ``default``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    return value
