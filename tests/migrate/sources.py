"""What the migrate tests share: the data every source is filled with, and checks of the
source and the destination after an import."""

from __future__ import annotations

import hashlib
import shelve
from pathlib import Path
from typing import Any

import sqlitedict

import persistdict

# JSON-faithful values of every shape, and enough keys to span several write batches.
DATA: dict[str, Any] = {
    "cfg": {"root": "/srv", "n": [1, 2.5, None, True, False]},
    "unicode ключ ✓": "värde",
    "empty dict": {},
    "empty list": [],
    "nested": {"a": {"b": {"c": [1, {"d": "e"}]}}},
    "int": -42,
    "float": 1.5e300,
    "text": "line one\nline two",
    "": "empty key",
    **{f"k{i:05d}": {"i": i, "s": "x" * (i % 7)} for i in range(2500)},
}


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with a digest of its bytes (the destination folder ``out``
    left aside): the source must not change, nor gain files."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.relative_to(folder).parts[0] != "out":
            found[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def read_all(target: Path, **options: Any) -> dict[str, Any]:
    """Every item of the dict at ``target``, opened read-only."""
    with persistdict.open(target, "r", **options) as d:
        return dict(d.items())


def assert_no_destination(dst: Path) -> None:
    """The folder of ``dst`` is empty: a failed import left nothing, not even scratch."""
    leftovers = sorted(p.name for p in dst.parent.iterdir())
    assert leftovers == [], f"a failed import left {leftovers}"


def make_sqlitedict(path: Path, data: dict[str, Any], **options: Any) -> None:
    """A sqlitedict file at ``path`` holding ``data``, made by sqlitedict itself."""
    with sqlitedict.SqliteDict(str(path), **options) as d:
        for key, value in data.items():
            d[key] = value
        d.commit()


def make_shelve(path: Path, data: dict[str, Any]) -> None:
    """A shelve at ``path`` holding ``data``, made by this Python's shelve."""
    with shelve.open(str(path), "n") as sh:
        sh.update(data)
