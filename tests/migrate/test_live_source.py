"""A SQLite source that another process writes during the copy still copies consistently.

A writer process moves amounts between accounts (each move one transaction of the library
that owns the file, WAL checkpoints in between), paused and resumed at every batch of the
copy. The copy must hold one consistent state: every account, and the invariant total.
``PERSISTDICT_LIVE_SOURCE_RUNS=N`` repeats each case N times (default 2).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict import migrate

ACCOUNTS = 6000
START = 1000
RUNS = int(os.environ.get("PERSISTDICT_LIVE_SOURCE_RUNS", "2"))
WRITER = Path(__file__).with_name("live_writer.py")
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def make_source(kind: str, path: Path) -> None:
    accounts = {f"acct{i:05d}": {"n": START, "pad": "p" * 600} for i in range(ACCOUNTS)}
    if kind == "persistdict":
        with persistdict.open(path) as d:
            d.update(accounts)
    elif kind == "sqlitedict":
        import sqlitedict

        with sqlitedict.SqliteDict(str(path), journal_mode="WAL") as sd:
            for key, value in accounts.items():
                sd[key] = value
            sd.commit()
    else:
        import diskcache

        with diskcache.Cache(str(path)) as cache:
            for key, value in accounts.items():
                cache[key] = value


class Writer:
    def __init__(self, kind: str, path: Path, seed: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WRITER), kind, str(path), str(seed)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def go(self, transfers: int) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(f"go {transfers}\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        assert answer == "done\n", f"the writer stopped: {answer!r}"

    def stop(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        assert self.proc.wait(timeout=60) == 0


@pytest.mark.parametrize("run", range(RUNS))
@pytest.mark.parametrize("kind", ["persistdict", "sqlitedict", "diskcache"])
def test_copy_of_a_source_written_meanwhile_is_one_consistent_state(
    tmp_path: Path, kind: str, run: int
) -> None:
    pytest.importorskip(kind)
    src = tmp_path / ("cache" if kind == "diskcache" else "src.db")
    make_source(kind, src)
    writer = Writer(kind, src, seed=run)
    batches = [0]

    def between_batches(done: int, total: int | None, seconds: float) -> None:
        # The writer first opens the file here, after the copy did, and works while the
        # copy is half-way through: transfers plus checkpoints that rewrite the main file.
        batches[0] += 1
        writer.go(150)

    try:
        migrate.copy(
            src, tmp_path / "copy.db", source=kind, trust_pickle=True, progress=between_batches
        )
    finally:
        writer.stop()
    with persistdict.open(tmp_path / "copy.db", "r") as d:
        copied: dict[str, Any] = dict(d.items())
    assert batches[0] >= 5
    assert len(copied) == ACCOUNTS
    total = sum(value["n"] for value in copied.values())
    assert total == ACCOUNTS * START, f"the copy is {ACCOUNTS * START - total} short"


def _as_root_with(*tools: str) -> None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("needs root (another uid, a mount)")
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool}")


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder under /tmp that another uid can reach (pytest's tmp_path is private)."""
    folder = Path(tempfile.mkdtemp(prefix="persistdict-live-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_wal_file_on_read_only_media_is_read_without_locks(
    shared_folder: Path, tmp_path: Path
) -> None:
    # The one place immutable=1 is used: nothing can write there, and SQLite can't create
    # the -wal/-shm files its locks need.
    _as_root_with("mount", "umount")
    media = shared_folder / "media"
    media.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", media], check=True)
    try:
        with persistdict.open(media / "a.db") as d:
            d.update({"a": 1, "b": [2]})
        subprocess.run(["mount", "-o", "remount,ro", media], check=True)
        migrate.copy(media / "a.db", tmp_path / "b.json")
        assert sorted(p.name for p in media.iterdir()) == ["a.db"]
    finally:
        subprocess.run(["umount", media], check=True)
    with persistdict.open(tmp_path / "b.json", "r") as d:
        assert dict(d) == {"a": 1, "b": [2]}


@pytest.mark.parametrize("folder_mode", [0o755, 0o777], ids=["folder-0755", "folder-0777"])
def test_another_users_wal_file_is_refused_and_left_as_it_was(
    shared_folder: Path, folder_mode: int
) -> None:
    # Reading it with locks would leave -wal/-shm files owned by this user beside it, which
    # block its owner's next writer; reading it without locks is unsafe. Say so instead.
    _as_root_with("setpriv")
    src = shared_folder / "a.db"
    with persistdict.open(src) as d:
        d["a"] = 1
    src.chmod(0o644)
    shared_folder.chmod(folder_mode)
    before = src.read_bytes()
    code = (
        "import sys; from persistdict import migrate\n"
        "try:\n"
        f"    migrate.copy({str(src)!r}, '/dev/null/never')\n"
        "except PermissionError as exc:\n"
        "    print(exc.strerror)\n"
    )
    result = subprocess.run(
        [*AS_NOBODY, "/usr/bin/python3", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(Path(persistdict.__file__).parent.parent)},
    )
    assert result.stdout.startswith(f"can't read {str(src)!r} safely: it is a WAL database")
    assert "Run as the file's owner, or copy the file" in result.stdout
    assert sorted(p.name for p in shared_folder.iterdir()) == ["a.db"]
    assert src.read_bytes() == before
