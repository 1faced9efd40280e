"""The public surface is pinned: a name added or removed is a decision, not an accident."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import persistdict


def test_all_is_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(persistdict).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert set(persistdict.__all__) - {"__version__"} == public


def test_py_typed_ships_with_the_package() -> None:
    assert (Path(persistdict.__file__).parent / "py.typed").is_file()


def test_error_tree() -> None:
    assert issubclass(persistdict.CorruptError, persistdict.Error)
    assert issubclass(persistdict.CorruptError, ValueError)
    assert issubclass(persistdict.ClosedError, persistdict.Error)
    assert issubclass(persistdict.ClosedError, ValueError)
    assert issubclass(persistdict.ReadOnlyError, persistdict.Error)
    assert issubclass(persistdict.LockedError, persistdict.Error)


def test_core_import_needs_only_the_standard_library() -> None:
    code = (
        "import sys, persistdict\n"
        "bad = [m for m in ('redis', 'psycopg', 'lmdb', 'hypothesis', 'pytest')"
        " if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
