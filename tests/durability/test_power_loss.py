"""Power-loss simulation: replay the traced syscalls of a flush, cut at every point.

How it works. A real flush (or open) runs under strace; its file-system calls are turned into
operations on a model of the folder: ``create``, ``write`` and ``truncate`` of a file,
``fsync`` of a file, ``rename``/``link``/``unlink`` of names, and ``fsync`` of the folder.
The model keeps two states: what the process saw (every call applied), and what is durable
(file bytes as of that file's last fsync; names as of the folder's last fsync). A power cut
after operation ``k`` may leave on disk the durable names plus any prefix of the name changes
made since the last folder fsync, and each file's bytes with all writes since its last fsync
either dropped or kept. Every such state is written to a fresh folder (hard links kept as
links) and opened with persistdict for real: it must open and hold one whole version, the
old or the new; after the last operation (the call returned) it must hold the new one.

Why the model is sound for what it checks. It is weaker than any POSIX file system that
honours fsync: unsynced data is assumed lost (real systems usually keep some), and a name
change is assumed lost unless the folder was fsynced after it (ext4 and XFS usually persist
it with the next journal commit anyway). An order of operations that survives this model
survives those file systems too. Two negative controls prove the replay can fail: the same
trace without the temp file's fsync, and without the folder fsync, must both be caught.

What it does not cover. It assumes name changes inside one folder reach the disk in the
order they were issued (journalling file systems commit metadata in order; a file system
that reorders renames is outside the model), that an fsync that returned success is true
(drives that lie about their write cache are outside any software's reach), and that a
single write either lands or is dropped as a whole at the granularity of a call, not torn
inside a sector. It models one folder, not SQLite, whose own journal has its own test suite
(SQLite is covered here by the kill test). It checks what persistdict writes, not bugs in
the kernel or the file system.

Why not a finer tool: dm-log-writes records real block writes but needs root, a device-mapper
target and a spare block device, none of which an unprivileged CI container has; ALICE
explores the same kind of crash states from a trace but needs its own patched strace and
tool chain. This model applies ALICE's idea at the granularity we need (one folder, whole
calls), on the stock strace that CI installs anyway.
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict.fileio import TEMP_MARKER
from tests.durability.evidence import record
from tests.durability.syscalls import Call, trace

TARGETS = {"json": "state.json", "csv": "state.csv", "pickle": "state.bin"}
OLD = {"a": "old", "b": "old " * 50}
MID = {"a": "mid", "b": "mid " * 40}
NEW = {"a": "new", "b": "new " * 60, "c": "added"}

Op = tuple[Any, ...]


@dataclass
class Folder:
    """One folder: names to inode numbers, inode bytes, both as seen and as durable."""

    names: dict[str, int]
    data: dict[int, bytes]
    durable_names: dict[str, int] = field(default_factory=dict)
    durable_data: dict[int, bytes] = field(default_factory=dict)
    pending: list[Op] = field(default_factory=list)  # name changes since the last folder fsync

    def __post_init__(self) -> None:
        self.durable_names = dict(self.names)
        self.durable_data = dict(self.data)


def _apply_name_change(names: dict[str, int], op: Op) -> None:
    kind = op[0]
    if kind == "create":
        names[op[1]] = op[2]
    elif kind == "rename":
        names[op[2]] = names.pop(op[1])
    elif kind == "link":
        names[op[2]] = names[op[1]]
    elif kind == "unlink":
        del names[op[1]]


def _apply(folder: Folder, op: Op) -> None:
    kind = op[0]
    if kind in ("create", "rename", "link", "unlink"):
        _apply_name_change(folder.names, op)
        folder.pending.append(op)
        if kind == "create":
            folder.data[op[2]] = b""
            folder.durable_data.setdefault(op[2], b"")
    elif kind == "write":
        _, ino, offset, data = op
        old = folder.data[ino].ljust(offset, b"\0")
        folder.data[ino] = old[:offset] + data + old[offset + len(data) :]
    elif kind == "truncate":
        folder.data[op[1]] = folder.data[op[1]][: op[2]].ljust(op[2], b"\0")
    elif kind == "fsync":
        folder.durable_data[op[1]] = folder.data[op[1]]
    elif kind == "dirsync":
        folder.durable_names = dict(folder.names)
        folder.pending.clear()


def operations(calls: list[Call], root: Path, names: dict[str, int]) -> list[Op]:
    """The model operations for the calls that touch ``root``; new inodes get fresh numbers."""
    current = dict(names)
    fds: dict[int, int | None] = {}  # fd -> inode, or None for the folder itself
    offsets: dict[int, int] = {}
    fresh = itertools.count(max(names.values(), default=0) + 1_000_000)
    ops: list[Op] = []

    def local(call: Call, index: int) -> str | None:
        path = Path(call.path(index))
        path = path if path.is_absolute() else root / path
        return path.name if path.parent == root else None

    for call in calls:
        if call.result < 0:
            continue
        name = call.name
        if name == "open":
            flags = str(call.args[1])
            if call.path(0).rstrip("/") in (str(root), "."):
                fds[call.result] = None
                continue
            target = local(call, 0)
            if target is None:
                continue
            if target not in current:
                ino = next(fresh)
                current[target] = ino
                ops.append(("create", target, ino))
            fds[call.result] = current[target]
            offsets[call.result] = 0
            if "O_TRUNC" in flags:
                ops.append(("truncate", current[target], 0))
        elif name in ("write", "pwrite64") and call.fd() in fds:
            ino = fds[call.fd()]
            data = call.args[1]
            assert ino is not None
            assert isinstance(data, bytes)
            data = data[: call.result]
            offset = int(call.args[3]) if name == "pwrite64" else offsets[call.fd()]
            ops.append(("write", ino, offset, data))
            if name == "write":
                offsets[call.fd()] += len(data)
        elif name == "ftruncate" and call.fd() in fds:
            ops.append(("truncate", fds[call.fd()], int(call.args[1])))
        elif name in ("fsync", "fdatasync") and call.fd() in fds:
            ino = fds[call.fd()]
            ops.append(("dirsync",) if ino is None else ("fsync", ino))
        elif name == "close":
            fds.pop(call.fd(), None)
        elif name in ("rename", "link"):
            src, dst = local(call, 0), local(call, 1)
            if src is not None and dst is not None:
                op: Op = (name, src, dst)
                ops.append(op)
                _apply_name_change(current, op)
        elif name == "unlink":
            gone = local(call, 0)
            if gone is not None:
                ops.append(("unlink", gone))
                del current[gone]
        elif name in ("writev", "sync_file_range", "creat") and call.fd() in fds:
            pytest.fail(f"the model does not handle {call}; extend it")
    return ops


State = tuple[dict[str, int], dict[int, bytes]]  # names -> inode, inode -> bytes


def crash_states(start: Folder, ops: list[Op]) -> Iterator[tuple[int, State, bool]]:
    """Yield ``(cut, state, returned)`` for every state a power cut could leave."""
    folder = Folder(dict(start.names), dict(start.data))
    for cut in range(len(ops) + 1):
        if cut:
            _apply(folder, ops[cut - 1])
        for kept in range(len(folder.pending) + 1):
            names = dict(folder.durable_names)
            for op in folder.pending[:kept]:
                _apply_name_change(names, op)
            for lose_unsynced in (True, False):
                source = folder.durable_data if lose_unsynced else folder.data
                yield cut, (names, dict(source)), cut == len(ops)


def _snapshot(root: Path) -> Folder:
    names = {p.name: p.stat().st_ino for p in root.iterdir() if p.is_file()}
    return Folder(names, {ino: (root / n).read_bytes() for n, ino in names.items()})


def _materialize(state: State, into: Path) -> None:
    names, data = state
    into.mkdir(parents=True)
    first: dict[int, str] = {}
    for name, ino in sorted(names.items()):
        if ino in first:  # names that share an inode in the model share one here too
            os.link(into / first[ino], into / name)
        else:
            (into / name).write_bytes(data.get(ino, b""))
            first[ino] = name


@dataclass
class Scenario:
    """What is traced (``snippet``) and which versions a replayed state may hold."""

    name: str
    backend: str
    snippet: str
    versions: list[dict[str, Any]]
    final: dict[str, Any]  # the only version allowed once the traced call returned
    options: dict[str, Any] = field(default_factory=dict)


def scenario(kind: str, backend: str, path: Path) -> Scenario:
    opening = f"d = persistdict.open({str(path)!r}, backend={backend!r}"
    if kind == "flush":  # an existing file, with a previous generation beside it
        steps = f"{opening})\nd.update({NEW!r})\nmark('begin')\nd.flush()\nmark('end')\n"
        return Scenario(kind, backend, steps, [MID, NEW], NEW)
    if kind == "create":  # no file yet: a missing file opens as a new empty dict
        steps = f"mark('begin')\n{opening})\nd.update({NEW!r})\nd.flush()\nmark('end')\n"
        return Scenario(kind, backend, steps, [{}, NEW], NEW)
    # recover: the damaged file is kept aside and the previous generation put back; opening
    # any replayed state with recover=True must therefore give that generation.
    steps = (
        "import warnings\nwarnings.simplefilter('ignore')\n"
        f"mark('begin')\n{opening}, recover=True)\nmark('end')\n"
    )
    return Scenario(kind, backend, steps, [OLD], OLD, {"recover": True})


def _prepare(scenario: Scenario, path: Path) -> None:
    if scenario.name == "create":
        return
    for data in (OLD, MID):  # two flushes, so a previous generation exists
        with persistdict.open(path, backend=scenario.backend) as d:
            d.update(data)
    if scenario.name == "recover":
        # Zeroed blocks after a cut, as an unsynced write leaves them (the quote makes the
        # damage visible to CSV too, which would take NULs as text); in place, so the
        # previous generation, another inode, is unharmed.
        size = len(path.read_bytes())
        with open(path, "r+b") as f:
            f.seek(size // 2)
            f.write(b'\n"' + b"\0" * size)


def _check_state(scenario: Scenario, folder: Path, returned: bool) -> str | None:
    """Open a replayed state as a user would; return what is wrong with it, if anything."""
    path = folder / TARGETS[scenario.backend]
    expected = [scenario.final] if returned else scenario.versions
    try:
        with (
            warnings.catch_warnings(record=True),  # recover=True says what it restored
            persistdict.open(path, backend=scenario.backend, **scenario.options) as d,
        ):
            data = dict(d)
    except persistdict.CorruptError as exc:
        return f"does not open: {exc}"
    if any(name.endswith(".tmp") and TEMP_MARKER in name for name in os.listdir(folder)):
        return "a temp file survived the reopen"
    if data not in expected:
        return f"holds {data!r}, expected one of {expected!r}"
    return None


def replay(scenario: Scenario, start: Folder, ops: list[Op], work: Path) -> tuple[int, list[str]]:
    """Check every crash state; return how many there were and what went wrong."""
    problems, count = [], 0
    for n, (cut, state, returned) in enumerate(crash_states(start, ops)):
        folder = work / f"state-{n}"
        _materialize(state, folder)
        count += 1
        problem = _check_state(scenario, folder, returned)
        if problem:
            problems.append(
                f"cut after {cut}/{len(ops)} ({ops[cut - 1] if cut else 'start'}): {problem}"
            )
    return count, problems


def _traced(tmp_path: Path, kind: str, backend: str) -> tuple[Scenario, Folder, list[Op]]:
    root = (tmp_path / "live").resolve()
    root.mkdir()
    path = root / TARGETS[backend]
    plan = scenario(kind, backend, path)
    _prepare(plan, path)
    start = _snapshot(root)
    calls = trace("import persistdict\n" + plan.snippet + "os._exit(0)\n", root)
    return plan, start, operations(calls, root, start.names)


@pytest.mark.parametrize("kind", ["flush", "create", "recover"])
@pytest.mark.parametrize("backend", sorted(TARGETS))
def test_every_cut_leaves_a_whole_version(tmp_path: Path, backend: str, kind: str) -> None:
    plan, start, ops = _traced(tmp_path, kind, backend)
    assert any(op[0] == "rename" for op in ops), ops
    count, problems = replay(plan, start, ops, tmp_path / "replay")
    record(f"power loss {backend} {kind}: {len(ops)} operations, {count} crash states replayed")
    assert problems == []


@pytest.mark.parametrize("dropped", ["fsync", "dirsync"])
def test_the_replay_catches_a_missing_fsync(tmp_path: Path, dropped: str) -> None:
    """Negative control: the same trace less one fsync must fail the replay."""
    plan, start, ops = _traced(tmp_path, "flush", "json")
    unsafe = [op for op in ops if op[0] != dropped]
    assert len(unsafe) < len(ops), f"the trace has no {dropped} to drop: {ops}"
    _, problems = replay(plan, start, unsafe, tmp_path / "replay")
    assert problems, f"dropping the {dropped} went unnoticed"
