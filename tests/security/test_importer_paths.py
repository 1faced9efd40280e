"""The diskcache importer reads value files only inside the cache folder it was given.

A cache.db names each large value's file in its ``filename`` column. A crafted one could name
any file the user can read (``/home/me/.ssh/id_rsa``, ``../../secret``, a symlink planted in
the folder) and have its bytes copied into the destination. Each of those is a CorruptError
naming the row, and nothing is written.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import diskcache
import pytest

import persistdict
from persistdict import migrate

SECRET = b"outside-the-cache: private bytes"
BIG = b"v" * 100_000  # above diskcache's min_file_size: kept in a file of its own


def make_cache(folder: Path) -> tuple[Path, str]:
    """A real diskcache folder with one small and one file-backed bytes value; returns the
    folder and the file name diskcache recorded for the big one."""
    cache = folder / "cache"
    with diskcache.Cache(str(cache)) as c:
        c["small"] = b"s"
        c["big"] = BIG
    cx = sqlite3.connect(cache / "cache.db")
    (filename,) = cx.execute("SELECT filename FROM Cache WHERE key = 'big'").fetchone()
    cx.close()
    assert filename
    assert not os.path.isabs(filename)
    return cache, filename


def point_at(cache: Path, filename: str) -> None:
    cx = sqlite3.connect(cache / "cache.db")
    cx.execute("UPDATE Cache SET filename = ? WHERE key = 'big'", (filename,))
    cx.commit()
    cx.close()


def test_a_genuine_cache_with_files_in_subfolders_still_imports(tmp_path: Path) -> None:
    cache, filename = make_cache(tmp_path)
    assert os.sep in filename  # diskcache nests its files in two levels of folders
    migrate.copy(cache, tmp_path / "out.db", on_error="str")
    with persistdict.open(tmp_path / "out.db", "r") as d:
        assert d["big"] == BIG.decode()
        assert d["small"] == "s"


def _outside(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    return secret


@pytest.mark.parametrize(
    "how", ["absolute", "dotdot", "dotdot-inside-subfolder", "symlink-file", "symlink-folder"]
)
def test_a_value_file_outside_the_cache_is_a_corrupt_error_naming_the_row(
    tmp_path: Path, how: str
) -> None:
    cache, filename = make_cache(tmp_path)
    secret = _outside(tmp_path)
    if how == "absolute":
        named = str(secret)
    elif how == "dotdot":
        named = "../secret.txt"
    elif how == "dotdot-inside-subfolder":
        named = os.path.join(os.path.dirname(filename), "..", "..", "..", "secret.txt")
    elif how == "symlink-file":
        (cache / "planted.val").symlink_to(secret)
        named = "planted.val"
    else:
        (cache / "up").symlink_to(tmp_path)
        named = "up/secret.txt"
    point_at(cache, named)
    dst = tmp_path / "out.json"
    with pytest.raises(persistdict.CorruptError) as info:
        migrate.copy(cache, dst, on_error="str")
    message = str(info.value)
    assert "key 'big'" in message
    assert repr(named) in message
    assert "outside the cache folder" in message
    assert not dst.exists()


def test_the_cli_refuses_it_too_and_prints_no_byte_of_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache, _ = make_cache(tmp_path)
    point_at(cache, str(_outside(tmp_path)))
    from persistdict.cli import main

    assert main(["convert", str(cache), str(tmp_path / "out.json"), "--on-error", "str"]) == 1
    out, err = capsys.readouterr()
    assert "outside the cache folder" in err
    assert SECRET.decode() not in out + err
    assert not (tmp_path / "out.json").exists()


def test_a_value_file_that_is_not_a_regular_file_is_refused_without_blocking(
    tmp_path: Path,
) -> None:
    cache, _ = make_cache(tmp_path)
    os.mkfifo(cache / "pipe.val")  # opening a FIFO for reading would wait for a writer
    point_at(cache, "pipe.val")
    result: list[BaseException] = []

    def convert() -> None:
        try:
            migrate.copy(cache, tmp_path / "out.json", on_error="str")
        except BaseException as exc:
            result.append(exc)

    worker = threading.Thread(target=convert, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock it before failing, so the process can end
        with open(cache / "pipe.val", "wb"):
            pass
        worker.join(10)
        pytest.fail("the importer blocked opening a FIFO named by the cache")
    assert len(result) == 1
    assert isinstance(result[0], persistdict.CorruptError)
    assert "not a regular file" in str(result[0])
    assert "key 'big'" in str(result[0])
