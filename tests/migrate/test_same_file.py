"""convert refuses to write into its own source, however the two are spelled."""

from __future__ import annotations

import hashlib
import shelve
import sqlite3
from pathlib import Path

import pytest

import persistdict
from persistdict import migrate
from tests.test_cli import run as cli


def digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def spellings(tmp_path: Path) -> dict[str, str]:
    """Other names of tmp_path/data.db: relative, through a symlinked file and folder, URLs."""
    (tmp_path / "link.db").symlink_to(tmp_path / "data.db")
    (tmp_path / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    return {
        "relative": "./sub/../data.db",
        "absolute": str(tmp_path / "data.db"),
        "symlink": "link.db",
        "folder-link": "dirlink/data.db",
        "relative-url": "sqlite:///data.db",
        "absolute-url": f"sqlite:///{tmp_path / 'data.db'}",
        "url-through-link": f"sqlite:///{tmp_path / 'dirlink' / 'link.db'}",
    }


@pytest.mark.parametrize(
    "spelling",
    [
        "relative",
        "absolute",
        "symlink",
        "folder-link",
        "relative-url",
        "absolute-url",
        "url-through-link",
    ],
)
def test_convert_into_another_table_of_the_source_file_is_refused(
    tmp_path: Path, spelling: str
) -> None:
    (tmp_path / "sub").mkdir()
    with persistdict.open(tmp_path / "data.db") as d:
        d.update({"a": 1, "b": [2]})
    dst = spellings(tmp_path)[spelling]
    before = digests(tmp_path)
    result = cli("convert", "data.db", dst, "--dst-table", "copy2", cwd=tmp_path)
    assert result.returncode == 2, result
    assert result.stderr == (
        f"persistdict: error: source and destination are the same file: 'data.db' and "
        f"{dst!r} ({str(tmp_path / 'data.db')!r}); convert never writes its source, not even "
        "another table of it, so copy into another file\n"
    )
    assert digests(tmp_path) == before, "the source file changed or gained side files"
    cx = sqlite3.connect(tmp_path / "data.db")
    tables = [r[0] for r in cx.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    cx.close()
    assert tables == ["items"]


def test_a_dbm_or_shelve_source_is_not_merged_into_itself(tmp_path: Path) -> None:
    # dbm.dumb keeps "shelf" as shelf.dat/shelf.dir: no file is named "shelf" itself.
    with shelve.open(str(tmp_path / "shelf")) as sh:
        sh["a"] = [1]
    (tmp_path / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    before = digests(tmp_path)
    for dst in (tmp_path / "shelf", tmp_path / "dirlink" / "shelf"):
        with pytest.raises(ValueError, match="same file"):
            migrate.copy(
                tmp_path / "shelf", dst, trust_pickle=True, dst_backend="dbm", existing="merge"
            )
    assert digests(tmp_path) == before


def test_a_diskcache_folder_is_not_copied_into_its_own_database(tmp_path: Path) -> None:
    diskcache = pytest.importorskip("diskcache")
    with diskcache.Cache(str(tmp_path / "cache")) as cache:
        cache["a"] = 1
    before = digests(tmp_path / "cache")
    with pytest.raises(ValueError, match="same file"):
        migrate.copy(tmp_path / "cache", tmp_path / "cache" / "cache.db", existing="merge")
    assert digests(tmp_path / "cache") == before


def test_another_file_with_the_same_name_elsewhere_is_fine(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.json").write_text('{"k": 1}')
    migrate.copy(tmp_path / "a" / "x.json", tmp_path / "b" / "x.json")
    with persistdict.open(tmp_path / "b" / "x.json", "r") as d:
        assert dict(d) == {"k": 1}
