"""Fixtures of the migrate tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["db", "json"])
def dst(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A destination of each kind the issue names: a SQLite file and a JSON file."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder / f"imported.{request.param}"
