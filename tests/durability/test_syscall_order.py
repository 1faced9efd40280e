"""Syscall order of a real flush, traced with strace: the steps the durability promise rests on.

The order checked is the one in ``persistdict.fileio``'s docstring: the new bytes go to an
exclusively created temp file in the same folder, which is fsynced before it is renamed over
the target; the previous generation is hard-linked before that rename; the folder is fsynced
after it. A flush with nothing changed makes no writing call at all.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict.fileio import previous_path, temp_name_pattern
from tests.durability.evidence import record
from tests.durability.syscalls import Call, trace

TARGETS = {"json": "state.json", "csv": "state.csv", "pickle": "state.bin"}
WRITING = {"open", "creat", "write", "pwrite64", "writev", "rename", "link", "unlink", "ftruncate"}


def _flush_snippet(path: Path, backend: str, change: bool) -> str:
    assignment = "d['k2'] = 'new value'" if change else "pass"
    return (
        "import persistdict\n"
        f"d = persistdict.open({str(path)!r}, backend={backend!r})\n"
        f"{assignment}\n"
        "mark('begin')\n"
        "d.flush()\n"
        "mark('end')\n"
        "os._exit(0)\n"  # no close(): only the traced flush writes
    )


def _prepare(folder: Path, backend: str) -> Path:
    path = folder / TARGETS[backend]
    with persistdict.open(path, backend=backend) as d:
        d.update({"k1": "old", "k2": "old"})
    return path


def _opens_read_only(flags: object) -> bool:
    names = set(str(flags).split("|"))
    return "O_RDONLY" in names and not names & {"O_WRONLY", "O_RDWR", "O_TRUNC", "O_CREAT"}


def _index(calls: list[Call], what: str, predicate: Any, start: int = 0) -> int:
    for i, call in enumerate(calls[start:], start):
        if predicate(call):
            return i
    pytest.fail(f"the traced flush never made the call {what}:\n" + "\n".join(map(str, calls)))


@pytest.mark.parametrize("backend", sorted(TARGETS))
def test_flush_fsyncs_temp_before_rename_and_folder_after(tmp_path: Path, backend: str) -> None:
    path = _prepare(tmp_path, backend)
    calls = trace(_flush_snippet(path, backend, change=True), tmp_path)
    target = str(path.resolve())
    temp = temp_name_pattern(path.name)

    def creates_temp(c: Call) -> bool:
        return (
            c.name == "open"
            and "O_CREAT" in str(c.args[1])
            and "O_EXCL" in str(c.args[1])
            and os.path.dirname(c.path(0)) == target.rsplit("/", 1)[0]
            and temp.match(os.path.basename(c.path(0))) is not None
        )

    i_open = _index(calls, "open(temp, O_CREAT|O_EXCL)", creates_temp)
    tmp, fd = calls[i_open].path(0), calls[i_open].result
    written = b"".join(
        c.args[1]
        for c in calls
        if c.name == "write" and c.fd() == fd and isinstance(c.args[1], bytes)
    )
    assert written == path.read_bytes(), "the temp file got other bytes than the target now has"
    # From the temp file's open on: its fd number may have served another file before.
    i_fsync = _index(
        calls,
        "fsync(temp)",
        lambda c: c.name in ("fsync", "fdatasync") and c.fd() == fd,
        start=i_open,
    )
    i_close = _index(
        calls, "close(temp)", lambda c: c.name == "close" and c.fd() == fd, start=i_open
    )
    last_write = max(
        i
        for i, c in enumerate(calls)
        if i_open < i < i_close and c.name == "write" and c.fd() == fd
    )
    i_link = _index(calls, "link(target, ...)", lambda c: c.name == "link" and c.path(0) == target)
    link_name = calls[i_link].path(1)
    i_prev = _index(
        calls,
        "rename(link, prev)",
        lambda c: (
            c.name == "rename" and c.path(0) == link_name and c.path(1) == str(previous_path(path))
        ),
    )
    i_rename = _index(
        calls, "rename(temp, target)", lambda c: c.name == "rename" and c.path(0) == tmp
    )
    assert calls[i_rename].path(1) == target
    i_dir = _index(
        calls,
        "open(folder, O_DIRECTORY)",
        lambda c: (
            c.name == "open"
            and "O_DIRECTORY" in str(c.args[1])
            and c.path(0) == str(tmp_path.resolve())
        ),
    )
    dir_fd = calls[i_dir].result
    i_dir_fsync = max(
        (i for i, c in enumerate(calls) if c.name == "fsync" and c.fd() == dir_fd and i > i_rename),
        default=-1,
    )
    assert last_write < i_fsync < i_close < i_rename, (
        "the temp file was not fsynced before the rename"
    )
    assert i_link < i_prev < i_rename, "the previous generation was not linked before the rename"
    assert i_rename < i_dir < i_dir_fsync, "the folder was not fsynced after the rename"
    # Nothing but the rename changes the target's name: no in-place write, truncate or unlink.
    # Reading it is allowed: a flush soon after the file's last change compares its bytes
    # with the version loaded, to see another program's edit (ConflictError).
    for call in calls:
        read_only = call.name == "open" and len(call.args) > 1 and _opens_read_only(call.args[1])
        if (
            call.name in ("open", "unlink", "ftruncate", "creat")
            and call.args
            and call.args[0] == target.encode()
            and not read_only
        ):
            pytest.fail(f"the flush touched the target in place: {call}")
    record(f"syscall order {backend}: {len(calls)} calls traced, order holds")


@pytest.mark.parametrize("backend", sorted(TARGETS))
def test_unchanged_flush_makes_no_writing_call(tmp_path: Path, backend: str) -> None:
    path = _prepare(tmp_path, backend)
    before = path.read_bytes()
    calls = trace(_flush_snippet(path, backend, change=False), tmp_path)
    assert [c for c in calls if c.name in WRITING or c.name.startswith("fsync")] == []
    assert path.read_bytes() == before
