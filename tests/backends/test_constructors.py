"""What every backend class does alike when constructed directly, not through ``open()``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from persistdict import ClosedError
from persistdict.backends import _BUILTIN, backend_class

# The target each backend is given; servers on a port nothing listens on, since a bad flag is
# refused before anything is read, written or connected to.
_TARGETS = {
    "json": "state.json",
    "csv": "state.csv",
    "pickle": "state.pickle",
    "sqlite": "data.db",
    "dbm": "shelf",
    "lmdb": "data.lmdb",
    "memory": "memory://",
    "redis": "redis://127.0.0.1:1/0",
    "postgres": "postgresql://nobody@127.0.0.1:1/none",
}
_DRIVERS = {"lmdb": "lmdb", "redis": "redis", "postgres": "psycopg"}


def _target(name: str, folder: Path) -> str:
    if name in _DRIVERS:
        pytest.importorskip(_DRIVERS[name])
    target = _TARGETS[name]
    return target if "://" in target else str(folder / target)


@pytest.mark.parametrize("flag", ["x", "rw", "", None, "R"])
@pytest.mark.parametrize("name", sorted(_TARGETS))
def test_a_bad_flag_is_refused_and_leaves_no_file(tmp_path: Path, name: str, flag: Any) -> None:
    """``JsonFileBackend("x.json", flag="x")`` was accepted (and left the file behind), as in
    the csv, pickle, dbm and memory backends: only open() checked the flag."""
    target = _target(name, tmp_path)
    cls = backend_class(name)
    with pytest.raises(ValueError, match=r"flag must be one of 'r', 'w', 'c' or 'n', not "):
        cls(target, flag=flag)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["sqlite", "dbm", "lmdb"])
def test_a_closed_backend_says_so_and_how_to_go_on(tmp_path: Path, name: str) -> None:
    """One message for every closed store; the dbm backend's left out the remedy."""
    backend = backend_class(name)(_target(name, tmp_path))
    backend.close()
    with pytest.raises(ClosedError, match=r" is closed; open it again with persistdict.open\(\)$"):
        backend.get("k")


def test_every_builtin_backend_is_checked_here() -> None:
    assert sorted(_BUILTIN) == sorted(_TARGETS)
