"""Fault injection: make each file-system call of a flush fail, one at a time.

A first, clean flush records the sequence of ``os`` calls that ``atomic_write`` makes (open
of the temp file, fchmod, write, fsync, close, link of the previous generation, the two
renames, open/fsync/close of the folder). Then, for every position in that sequence and for
ENOSPC, EIO and EPERM, a fresh dict is changed and flushed with exactly that call failing.
The os functions are swapped in-process for the duration of the flush: this injects faults
into the real code path, it does not replace the file system.

Expected, by where the fault falls:

* before the rename over the target: the flush raises that very error, the target is
  byte-identical, no temp file is left, the dict still holds the new data, and a retry
  without the fault saves it;
* in the hard link of the previous generation: nothing raises, since that copy is a
  convenience; the flush completes;
* in the folder fsync after the rename: the error is raised (durability is not assured), the
  target already holds the whole new version, no temp file is left, and a retry succeeds.
"""

from __future__ import annotations

import errno
import os
import pickle
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict.fileio import TEMP_MARKER
from tests.durability.evidence import record

TARGETS = {"json": "state.json", "csv": "state.csv", "pickle": "state.bin"}
ERRNOS = (errno.ENOSPC, errno.EIO, errno.EPERM)
PATCHED = ("open", "fchmod", "write", "fsync", "close", "link", "replace")
OLD = {"a": "old", "b": "old"}
NEW = {"a": "old", "b": "new", "c": "added"}


class Injector:
    """Counts the patched os calls; the one at position ``fail_at`` raises ``OSError(err)``."""

    def __init__(self, fail_at: int | None = None, err: int = errno.EIO) -> None:
        self.fail_at = fail_at
        self.err = err
        self.calls: list[str] = []

    def wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            position = len(self.calls)
            self.calls.append(f"{name}({', '.join(_describe(a) for a in args[:2])})")
            if position != self.fail_at:
                return real(*args, **kwargs)
            if name == "close":
                real(*args, **kwargs)  # like a deferred NFS error: the descriptor is gone anyway
            raise OSError(self.err, f"{os.strerror(self.err)} (injected into {name})")

        return call

    @contextmanager
    def active(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        with monkeypatch.context() as patch:
            for name in PATCHED:
                patch.setattr(os, name, self.wrap(name, getattr(os, name)))
            yield


def _describe(arg: Any) -> str:
    """A label that is the same from run to run: ``<temp>``, ``<folder>``, or the name."""
    if not isinstance(arg, (str, os.PathLike)):
        return "fd" if isinstance(arg, int) else "data"
    if os.path.isdir(arg):
        return "<folder>"
    name = os.path.basename(os.fspath(arg))
    return "<temp>" if name.endswith(".tmp") and TEMP_MARKER in name else name


def _temps(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp") and TEMP_MARKER in p.name]


def _open_changed(path: Path, backend: str) -> persistdict.PersistDict:
    with persistdict.open(path, backend=backend, flag="n") as d:
        d.update(OLD)
    d = persistdict.open(path, backend=backend)
    d.update(NEW)
    return d


def _flush_sequence(folder: Path, backend: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    d = _open_changed(folder / TARGETS[backend], backend)
    recorder = Injector()
    with recorder.active(monkeypatch):
        d.flush()
    d.close()
    return recorder.calls


def _reopened(path: Path, backend: str) -> dict[str, Any]:
    with persistdict.open(path, backend=backend, flag="r") as d:
        return dict(d)


@pytest.mark.parametrize("backend", sorted(TARGETS))
def test_every_failing_call_of_a_flush(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sequence = _flush_sequence(tmp_path, backend, monkeypatch)
    rename = sequence.index(f"replace(<temp>, {TARGETS[backend]})")
    # After the rename and the folder's fsync, the previous generation loses its group and
    # other bits (open, fchmod, close): best effort too, the new version is already saved.
    closing = next(i for i in range(rename + 1, len(sequence)) if "prev" in sequence[i])
    best_effort = {i for i, c in enumerate(sequence) if c.startswith("link") or "prev" in c}
    best_effort |= set(range(closing, len(sequence)))
    assert sequence[closing:] == [
        f"open(.{TARGETS[backend]}.persistdict-prev, fd)",
        "fchmod(fd, fd)",
        "close(fd)",
    ], sequence
    assert len(best_effort) == 2 + 3, sequence  # the link and its rename; closing the old one
    count = 0
    for position, call in enumerate(sequence):
        for err in ERRNOS:
            path = tmp_path / f"{position}-{err}" / TARGETS[backend]
            path.parent.mkdir()
            d = _open_changed(path, backend)
            before = path.read_bytes()
            fault = Injector(position, err)
            with fault.active(monkeypatch):
                if position in best_effort:
                    d.flush()
                else:
                    with pytest.raises(OSError, match="injected") as caught:
                        d.flush()
            count += 1
            where = f"{backend}: {call} failing with {errno.errorcode[err]}"
            assert fault.calls[position] == call, f"{where}: the flush took another path"
            assert _temps(path.parent) == [], where
            assert dict(d) == NEW, where
            if position in best_effort:
                assert _reopened(path, backend) == NEW, where
            elif position <= rename:  # up to and including the rename itself
                assert caught.value.errno == err, where
                assert path.read_bytes() == before, where
            else:  # the folder fsync after the rename
                assert caught.value.errno == err, where
                assert _reopened(path, backend) == NEW, where
            d.flush()  # the retry, with the cause gone
            d.close()
            assert _reopened(path, backend) == NEW, where
            assert _temps(path.parent) == [], where
    points = len(sequence)
    record(f"faults {backend}: {count} injected ({points} calls of a flush x {len(ERRNOS)} errnos)")


@pytest.mark.parametrize("backend", sorted(TARGETS))
def test_failed_close_keeps_the_dict_open_for_a_retry(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / TARGETS[backend]
    d = _open_changed(path, backend)
    before = path.read_bytes()
    write = Injector(fail_at=2, err=errno.ENOSPC)  # open, fchmod, then the write
    with write.active(monkeypatch), pytest.raises(OSError, match="injected") as caught:
        d.close()
    assert caught.value.errno == errno.ENOSPC
    assert write.calls[2] == "write(fd, data)"
    assert not d.closed
    assert path.read_bytes() == before
    d.close()
    assert _reopened(path, backend) == NEW


def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write

    def one_byte_at_a_time(fd: int, data: Any) -> int:
        return real_write(fd, bytes(data[:1]))

    path = tmp_path / "state.json"
    d = _open_changed(path, "json")
    with monkeypatch.context() as patch:
        patch.setattr(os, "write", one_byte_at_a_time)
        d.close()
    assert _reopened(path, "json") == NEW


class Flaky:
    """Pickles fine until ``broken`` is set; then fails partway through the pickle stream."""

    broken = False

    def __reduce__(self) -> tuple[Any, ...]:
        if Flaky.broken:
            raise RuntimeError("can't pickle this today")
        return (Flaky, ())


def test_pickle_error_halfway_keeps_file_and_data(tmp_path: Path) -> None:
    path = tmp_path / "state.bin"
    with persistdict.open(path, backend="pickle") as d:
        d["first"] = "x" * 1000
    before = path.read_bytes()
    d = persistdict.open(path, backend="pickle")
    d["later"] = [1, 2, Flaky()]
    Flaky.broken = True
    try:
        with pytest.raises(RuntimeError, match="can't pickle this today"):
            d.flush()
        assert path.read_bytes() == before
        assert _temps(tmp_path) == []
    finally:
        Flaky.broken = False
    d.close()
    assert pickle.loads(path.read_bytes())["first"] == "x" * 1000
    with persistdict.open(path, backend="pickle", flag="r") as r:
        assert isinstance(r["later"][2], Flaky)


def test_unencodable_nested_value_names_the_key_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with persistdict.open(path) as d:
        d["cfg"] = {"root": "/srv"}
    before = path.read_bytes()
    d = persistdict.open(path)
    d["cfg"]["when"] = object()  # nested: set() never saw it
    with pytest.raises(TypeError, match=r"key 'cfg'.*not JSON serializable"):
        d.flush()
    assert path.read_bytes() == before
    assert _temps(tmp_path) == []
    d["cfg"]["when"] = "now"
    d.close()
    with persistdict.open(path, flag="r") as r:
        assert r["cfg"] == {"root": "/srv", "when": "now"}


@pytest.mark.parametrize("backend", sorted(TARGETS))
def test_transaction_whose_save_fails_is_undone(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / TARGETS[backend]
    with persistdict.open(path, backend=backend) as d:
        d["n"] = "1"
    before = path.read_bytes()
    d = persistdict.open(path, backend=backend)
    d["unsaved"] = "kept"  # before the block: not part of it
    fsync = Injector(fail_at=3, err=errno.ENOSPC)  # open, fchmod, write, then the fsync
    with fsync.active(monkeypatch), pytest.raises(OSError, match="injected"), d.transaction():
        d["n"] = str(int(d["n"]) + 1)
    assert fsync.calls[3] == "fsync(fd)"
    assert path.read_bytes() == before
    assert dict(d) == {"n": "1", "unsaved": "kept"}  # running the block again counts once
    with d.transaction():
        d["n"] = str(int(d["n"]) + 1)
    d.close()
    assert _reopened(path, backend) == {"n": "2", "unsaved": "kept"}
