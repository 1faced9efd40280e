"""convert and load write through a destination that is a symlink, as open() does: the file
it points at gets the new content, the link stays a link."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import persistdict
from tests.test_cli import run as cli


def read(path: Path, **options: str) -> dict[str, object]:
    with persistdict.open(path, "r", **options) as d:
        return dict(d.items())


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "src.json"
    path.write_text(json.dumps({"new": 1, "both": "new"}))
    return path


@pytest.mark.parametrize(
    ("command", "suffix"),
    [
        ("convert", ".json"),
        ("convert", ".pickle"),
        ("convert", ".db"),
        ("load", ".json"),
        ("load", ".db"),
    ],
)
def test_replace_through_a_symlink_keeps_the_link(
    tmp_path: Path, src: Path, command: str, suffix: str
) -> None:
    real = tmp_path / "real" / f"state{suffix}"
    real.parent.mkdir()
    options = {"backend": "pickle"} if suffix == ".pickle" else {}
    with persistdict.open(real, **options) as d:
        d.update({"old": 0, "both": "old"})
    if suffix != ".db":
        real.chmod(0o640)
    link = tmp_path / f"link{suffix}"
    link.symlink_to(os.path.relpath(real, tmp_path))
    extra = ["--backend", "pickle", "--trust-pickle"] if suffix == ".pickle" else []
    if command == "convert":
        result = cli("convert", src, link, "--replace", "-q", *extra)
    else:
        result = cli("load", link, "--replace", *extra, stdin=src.read_text())
    assert result.returncode == 0, result.stderr
    assert link.is_symlink(), "the link was replaced by a file"
    assert read(real, **options) == {"new": 1, "both": "new"}
    if suffix != ".db":
        assert real.stat().st_mode & 0o777 == 0o640
    leftovers = [p.name for p in real.parent.iterdir() if "persistdict-convert" in p.name]
    assert leftovers == []


def test_merge_through_a_symlink_and_into_a_dangling_one(tmp_path: Path, src: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text('{"old": 0}')
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert cli("convert", src, link, "--merge", "-q").returncode == 0
    assert link.is_symlink()
    assert read(real) == {"old": 0, "new": 1, "both": "new"}
    # A link to a file that does not exist yet: the copy is created where it points.
    dangling = tmp_path / "later.db"
    dangling.symlink_to(tmp_path / "made.db")
    assert cli("convert", src, dangling, "-q").returncode == 0
    assert dangling.is_symlink()
    assert read(tmp_path / "made.db") == {"new": 1, "both": "new"}
