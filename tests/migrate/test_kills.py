"""convert --merge and load into an existing destination, killed or signalled mid-way, leave
it whole: exactly as it was, or (once the copy was complete) exactly the new content.

Each case runs the real command line in a subprocess that pauses after every batch
(``paused_cli.py``), and kills it (SIGKILL: no cleanup at all) or signals it (SIGTERM,
SIGINT: a clean exit) after the first batch and after the last one, just before the commit.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict.migrate.target import SCRATCH_MARKER

PAUSED_CLI = Path(__file__).with_name("paused_cli.py")
KILLED_MID_MOVE = Path(__file__).with_name("killed_mid_move.py")
SOURCE = {f"k{i:05d}": {"i": i} for i in range(2500)}  # three batches of 1000
OLD = {"k00001": "old value", **{f"old{i:03d}": [i] for i in range(300)}}
MERGED = {**OLD, **SOURCE}


@dataclass
class Destination:
    target: str  # as given to the command line
    options: list[str]  # more command-line options
    opened: dict[str, Any]  # persistdict.open() options to read it back
    path: Path | None  # the local file, if any

    def read(self) -> dict[str, Any]:
        with persistdict.open(self.target, "r", **self.opened) as d:
            return dict(d.items())

    def fill(self, data: dict[str, Any]) -> None:
        with persistdict.open(self.target, "c", **self.opened) as d:
            d.update(data)


def destination(kind: str, tmp_path: Path) -> Destination:
    folder = tmp_path / "out"
    folder.mkdir(exist_ok=True)
    if kind in ("json", "pickle", "csv"):
        path = folder / f"dst.{kind}"
        opened: dict[str, Any] = {"backend": kind} if kind == "pickle" else {}
        options = ["--backend", kind, "--trust-pickle"] if kind == "pickle" else []
        if kind == "csv":
            opened, options = {"serializer": "json"}, []
        return Destination(str(path), options, opened, path)
    if kind in ("sqlite", "sqlite-new-table"):
        path = folder / "dst.db"
        table = "fresh" if kind == "sqlite-new-table" else "items"
        return Destination(str(path), ["--dst-table", table], {"table": table}, path)
    if kind == "lmdb":
        pytest.importorskip("lmdb")
        return Destination(str(folder / "dst.lmdb"), [], {}, folder / "dst.lmdb")
    from tests.helpers import namespace, server_url

    url = server_url(kind)
    name = namespace(kind, tmp_path)
    if kind == "postgres":
        return Destination(url, ["--dst-table", name], {"table": name}, None)
    target = f"{url}?prefix={urllib.parse.quote(name)}&lock_ttl=2"
    return Destination(target, [], {}, None)


def sqlite_tables(path: str) -> list[str]:
    cx = sqlite3.connect(path)
    try:
        return [r[0] for r in cx.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    finally:
        cx.close()


def scratches(dst: Destination) -> list[Path]:
    if dst.path is None:
        return []
    return sorted(dst.path.parent.glob(f".{dst.path.name}{SCRATCH_MARKER}*"))


class Paused:
    """The command line, stopped after a batch."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(PAUSED_CLI), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_for_batch(self, n: int) -> None:
        """Let it write batches until the n-th is written; it then waits there."""
        assert self.proc.stdout is not None
        for i in range(n):
            if i:
                self.go_on()
            line = self.proc.stdout.readline()
            assert line.startswith("batch "), (line, self.proc.stderr and self.proc.stderr.read())

    def go_on(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def end(self, sig: int) -> tuple[int, str]:
        self.proc.send_signal(sig)
        _, stderr = self.proc.communicate(timeout=60)
        return self.proc.returncode, stderr


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src.json"
    src.write_text(json.dumps(SOURCE))
    return src


KINDS = ["json", "pickle", "sqlite", "sqlite-new-table", "lmdb", "redis", "postgres"]


SIGNALS = [
    pytest.param(signal.SIGKILL, id="SIGKILL"),
    pytest.param(signal.SIGTERM, id="SIGTERM"),
]


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("kind", KINDS)
def test_convert_merge_killed_mid_way_leaves_the_destination_whole(
    kind: str, sig: int, batch: int, tmp_path: Path, source: Path
) -> None:
    dst = destination(kind, tmp_path)
    if kind == "sqlite-new-table":
        # The file holds another table; the copy goes into a table it does not have yet.
        with persistdict.open(dst.target, "c", table="items") as d:
            d.update(OLD)
    else:
        dst.fill(OLD)
    old = {} if kind == "sqlite-new-table" else dst.read()
    paused = Paused("convert", str(source), dst.target, "--merge", "-q", *dst.options)
    paused.wait_for_batch(batch)
    code, stderr = paused.end(sig)
    if kind == "sqlite-new-table":
        with persistdict.open(dst.target, "r", table="items") as d:
            assert dict(d.items()) == OLD
        # SIGTERM drops the table the copy made; after SIGKILL it stays, empty (see
        # docs/guarantees.md).
        assert ("fresh" in sqlite_tables(dst.target)) == (sig == signal.SIGKILL)
    if kind != "sqlite-new-table" or sig == signal.SIGKILL:
        assert dst.read() == old
    if sig == signal.SIGTERM:
        assert code == 143, stderr
        assert stderr == (
            f"persistdict: error: interrupted (SIGTERM); nothing was written to {dst.target!r}\n"
        )
        assert scratches(dst) == []
    else:
        assert code == -signal.SIGKILL
    # The next run removes what the killed one left, and copies.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "persistdict",
            "convert",
            source,
            dst.target,
            "--merge",
            "-q",
            *dst.options,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert dst.read() == (SOURCE if kind == "sqlite-new-table" else MERGED)
    assert scratches(dst) == []


@pytest.mark.parametrize("sig", ["TERM", "INT"])
def test_a_signal_while_the_copy_is_moved_into_place_waits_for_it(
    sig: str, tmp_path: Path, source: Path
) -> None:
    # Sent while the finished copy is being renamed into place, the signal waits: the rename
    # completes, and the one line says the copy is complete (not "nothing was written").
    dst = destination("json", tmp_path)
    dst.fill(OLD)
    result = subprocess.run(
        [sys.executable, KILLED_MID_MOVE, sig, "convert", source, dst.target, "--replace", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == (143 if sig == "TERM" else 130)
    assert result.stderr == (
        f"persistdict: error: interrupted (SIG{sig}) after the copy was complete: "
        f"{dst.target!r} holds all of it\n"
    )
    assert dst.read() == SOURCE
    assert scratches(dst) == []


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("kind", ["json", "sqlite"])
def test_load_killed_while_writing_leaves_the_destination_whole(
    kind: str, sig: int, tmp_path: Path
) -> None:
    dst = destination(kind, tmp_path)
    dst.fill(OLD)
    assert dst.path is not None
    # The sign that load is writing: its scratch folder (json), the -wal of its
    # transaction (sqlite). Enough keys that it is still writing when the signal comes.
    sign = f".{dst.path.name}{SCRATCH_MARKER}*" if kind == "json" else f"{dst.path.name}-wal"
    big = json.dumps({f"n{i:06d}": i for i in range(200_000)})
    proc = subprocess.Popen(
        [sys.executable, "-m", "persistdict", "load", dst.target, "--replace"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(big)
    proc.stdin.close()
    deadline = time.monotonic() + 60
    while not list(dst.path.parent.glob(sign)):
        assert proc.poll() is None, "load ended before it could be signalled"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    proc.send_signal(sig)
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    proc.wait(timeout=60)
    assert dst.read() == OLD
    if sig == signal.SIGTERM:
        assert proc.returncode == 143
        assert stderr == (
            f"persistdict: error: interrupted (SIGTERM); nothing was written to {dst.target!r}\n"
        )
    assert (
        subprocess.run(
            [sys.executable, "-m", "persistdict", "check", dst.target], capture_output=True
        ).returncode
        == 0
    )
    assert scratches(dst) == []
