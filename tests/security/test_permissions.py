"""Temp files, previous generations and scratch copies never open to more people than the
data file itself, at any instant (docs/security.md, "Other local users")."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict import fileio
from persistdict.migrate import copy as convert
from tests.helpers import subprocess_env

from .helpers import OTHER_UID, needs_root, run_as_other

# Watches the folder with inotify and opens every temp file the moment it is created: the
# fastest a local attacker can be. Prints how many it could open for reading; stops when a
# file named "stop" appears (the test kills it if it never does).
_WATCHER = r"""
import ctypes, os, struct, sys
folder = os.environ["WATCH"]
os.sched_setaffinity(0, {int(os.environ["CPU"])})
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(0)
if fd < 0 or libc.inotify_add_watch(fd, folder.encode(), 0x100) < 0:  # IN_CREATE
    sys.exit("inotify: errno %d" % ctypes.get_errno())
print("ready", flush=True)
opened = 0
while True:
    buf = os.read(fd, 65536)
    names = []
    i = 0
    while i < len(buf):
        length = struct.unpack_from("iIII", buf, i)[3]
        names.append(buf[i + 16:i + 16 + length].rstrip(b"\0").decode())
        i += 16 + length
    for name in names:
        if name == "stop":
            print(opened)
            sys.exit(0)
        if not name.endswith(".tmp"):
            continue
        try:
            os.close(os.open(os.path.join(folder, name), os.O_RDONLY))
            opened += 1
        except OSError:
            pass
"""

_TEMP = re.compile(r"\.secret\.json\.persistdict-[0-9a-f]{16}\.tmp\Z")


def _other_can_open(path: Path, flags: str = "r") -> bool:
    code = (
        "import os, sys\n"
        "flags = os.O_RDONLY if sys.argv[2] == 'r' else os.O_WRONLY\n"
        "try:\n    os.close(os.open(sys.argv[1], flags))\nexcept OSError:\n    sys.exit(3)\n"
    )
    return run_as_other(code, str(path), flags).returncode == 0


# Rewrites an existing 0600 file, opened without mode= (so only the file's own mode says who
# may read it), up to N times or for 4 s; prints how many flushes it made. It runs at nice 19
# on the watcher's CPU: the watcher, woken by inotify, then runs before the writer's next
# instruction, as it would on a busy machine.
_WRITER = r"""
import os, sys, time, persistdict
os.sched_setaffinity(0, {int(sys.argv[2])})
os.nice(19)
deadline = time.monotonic() + 4
with persistdict.open(sys.argv[1]) as d:
    i = 0
    while i < int(sys.argv[3]) and time.monotonic() < deadline:
        d["token"] = f"s3cret-{i}"
        d.flush()
        i += 1
print(i)
"""


@needs_root
def test_other_user_never_opens_a_temp_file_during_many_flushes(open_folder: Path) -> None:
    """Another uid watches the folder with inotify and opens each temp file as it appears,
    while a 0600 file is flushed up to 100 times. On 0.1 it opened 98 to 100 of 100."""
    path = open_folder / "secret.json"
    path.write_text("{}")
    path.chmod(0o600)
    cpu = str(min(os.sched_getaffinity(0)))
    as_other = ["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups"]
    watcher = subprocess.Popen(
        [*as_other, sys.executable, "-I", "-S", "-c", _WATCHER],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "WATCH": str(open_folder), "CPU": cpu},
    )
    try:
        assert watcher.stdout is not None
        assert watcher.stdout.readline().strip() == "ready"
        flushes = int(
            subprocess.run(
                [sys.executable, "-c", _WRITER, str(path), cpu, "100"],
                env=subprocess_env(),
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            ).stdout
        )
        (open_folder / "stop").touch()
        out, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert flushes >= 20
    assert out.strip() == "0", f"the other user opened {out.strip()} of {flushes} temp files {err}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"token": f"s3cret-{flushes - 1}"}


@needs_root
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o400], ids=oct)
def test_temp_file_is_closed_to_others_from_its_first_instant(
    open_folder: Path, monkeypatch: pytest.MonkeyPatch, mode: int
) -> None:
    """Right after the temp file is created, before a byte is written or its mode is set,
    another uid tries to open it for reading and for writing: both are refused."""
    path = open_folder / "secret.json"
    path.write_text("{}")
    path.chmod(mode)
    seen: list[tuple[int, bool, bool]] = []
    real_open: Callable[..., int] = os.open

    def watching_open(file: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        fd = real_open(file, flags, *args, **kwargs)
        if flags & os.O_CREAT and _TEMP.match(os.path.basename(os.fspath(file))):
            created = stat.S_IMODE(os.fstat(fd).st_mode)
            seen.append((created, _other_can_open(file, "r"), _other_can_open(file, "w")))
        return fd

    monkeypatch.setattr(os, "open", watching_open)
    fileio.atomic_write(path, b'{"token": "s3cret"}', keep_previous=True)
    monkeypatch.undo()
    assert len(seen) == 1
    created, readable, writable = seen[0]
    assert (readable, writable) == (False, False), f"temp created {created:o}"
    assert created & ~mode & 0o777 == 0, f"temp created {created:o} for a {mode:o} file"
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert path.read_bytes() == b'{"token": "s3cret"}'


@needs_root
def test_rewrite_by_root_of_another_users_file_keeps_owner_group_and_mode(
    open_folder: Path,
) -> None:
    path = open_folder / "secret.json"
    path.write_text("{}")
    os.chown(path, 4321, 4322)
    path.chmod(0o640)
    with persistdict.open(path) as d:
        d["token"] = "s3cret"
    st = path.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (4321, 4322, 0o640)
    prev = fileio.previous_path(path).stat()
    # The owner's bits only, once it is no longer the data file (see the test below).
    assert (prev.st_uid, prev.st_gid, stat.S_IMODE(prev.st_mode)) == (4321, 4322, 0o600)


@needs_root
def test_previous_generation_is_no_wider_than_the_file(open_folder: Path) -> None:
    path = open_folder / "secret.json"
    with persistdict.open(path, mode=0o600) as d:
        d["token"] = "s3cret"
    with persistdict.open(path) as d:
        d["token"] = "s3cret-2"
    prev = fileio.previous_path(path)
    assert prev.exists()
    assert stat.S_IMODE(prev.stat().st_mode) == 0o600
    assert not _other_can_open(prev)
    assert not _other_can_open(path)


@needs_root
@pytest.mark.parametrize("backend", ["json", "csv", "pickle"])
def test_previous_generation_stays_closed_after_the_file_is_made_private(
    open_folder: Path, backend: str
) -> None:
    """The previous generation is an older version of the data: when its owner later makes
    the data file private (``chmod 600``), that version must not stay readable by others
    under its side name, as it did (0.1 kept it with the old file's 0o644)."""
    path = open_folder / "secret.dat"
    with persistdict.open(path, backend=backend) as d:  # 0o666 less the umask: 0o644
        d["token"] = "s3cret-1"
    with persistdict.open(path, backend=backend) as d:
        d["token"] = "s3cret-2"
    path.chmod(0o600)
    prev = fileio.previous_path(path)
    assert prev.exists()
    assert not _other_can_open(prev)
    assert not _other_can_open(path)
    # and recover=True puts it back with the data file's mode, not the side file's
    path.write_text("damaged")
    with (
        pytest.warns(UserWarning, match="restored the previous generation"),
        persistdict.open(path, backend=backend, recover=True) as d,
    ):
        assert d["token"] == "s3cret-1"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@needs_root
@pytest.mark.parametrize("dst_name", ["copy.json", "copy.db"])
def test_convert_scratch_copy_is_closed_to_others_while_it_is_built(
    open_folder: Path, monkeypatch: pytest.MonkeyPatch, dst_name: str
) -> None:
    """convert builds the destination in a scratch folder beside it; while the copy is
    being filled, another uid can open neither the folder's files nor list it."""
    src = open_folder / "secret.json"
    with persistdict.open(src, mode=0o600) as d:
        d.update({f"k{i}": f"s3cret-{i}" for i in range(20)})
    dst = open_folder / dst_name
    observed: list[tuple[str, bool]] = []
    real_update = persistdict.PersistDict.update

    def watching_update(self: Any, *args: Any, **kwargs: Any) -> None:
        real_update(self, *args, **kwargs)
        for entry in open_folder.iterdir():
            if ".persistdict-convert-" in entry.name:
                observed.append((entry.name, _other_can_open(entry)))
                for inner in entry.iterdir():
                    observed.append((inner.name, _other_can_open(inner)))

    monkeypatch.setattr(persistdict.PersistDict, "update", watching_update)
    convert(str(src), str(dst), mode=0o600)
    monkeypatch.undo()
    assert observed, "the scratch folder was not seen while the copy was built"
    assert [name for name, opened in observed if opened] == []
    assert stat.S_IMODE(dst.stat().st_mode) == 0o600


def _modes(db: Path) -> dict[str, int]:
    names = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in names if p.exists()}


@pytest.mark.parametrize(
    ("umask", "mode", "expected"),
    [(0o022, 0o600, 0o600), (0o002, None, 0o664), (0o000, None, 0o666), (0o027, 0o666, 0o640)],
    ids=["mode-0600", "umask-002", "umask-000", "umask-027"],
)
def test_new_sqlite_database_honours_mode_and_umask_and_its_wal_follows(
    open_folder: Path, umask: int, mode: int | None, expected: int
) -> None:
    """SQLite alone creates 0o644 less the umask whatever mode= says; -wal and -shm copy the
    database's mode."""
    db = open_folder / "secret.db"
    old = os.umask(umask)
    try:
        d = persistdict.open(db, mode=mode)
    finally:
        os.umask(old)
    try:
        d["token"] = "s3cret"
        modes = _modes(db)
        assert set(modes) == {"secret.db", "secret.db-wal", "secret.db-shm"}
        assert modes == dict.fromkeys(modes, expected)
    finally:
        d.close()


@needs_root
def test_sqlite_wal_of_a_0600_database_is_closed_to_others(open_folder: Path) -> None:
    db = open_folder / "secret.db"
    with persistdict.open(db) as d:
        d["token"] = "s3cret"
    db.chmod(0o600)
    with persistdict.open(db) as d:
        d["token"] = "s3cret-2"
        assert _modes(db) == {"secret.db": 0o600, "secret.db-wal": 0o600, "secret.db-shm": 0o600}
        for name in ("secret.db", "secret.db-wal", "secret.db-shm"):
            assert not _other_can_open(open_folder / name), name


_REWRITE_AS_OTHER = r"""
import sys
sys.path.insert(0, sys.argv[2])
import persistdict
with persistdict.open(sys.argv[1]) as d:
    d["token"] = "rewritten by another user"
"""


@needs_root
@pytest.mark.parametrize("member", [True, False], ids=["member-of-group", "not-member"])
def test_rewrite_by_another_user_keeps_the_group_or_drops_its_bits(
    open_folder: Path, member: bool
) -> None:
    """A user who may write a group-shared file but can't give the new version its owner
    keeps its group when they belong to it; otherwise their own group gets only what others
    had, not the bits that were meant for the old group."""
    open_folder.chmod(0o777)
    path = open_folder / "shared.json"
    path.write_text("{}")
    os.chown(path, 4321, 4322)
    path.chmod(0o660 if member else 0o646)  # a non-member writes it as one of "others"
    src = str(Path(persistdict.__file__).resolve().parents[1])
    groups = ["--groups=4322"] if member else ["--clear-groups"]
    command = ["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", *groups]
    subprocess.run(
        [*command, sys.executable, "-I", "-c", _REWRITE_AS_OTHER, str(path), src],
        check=True,
        timeout=60,
        capture_output=True,
    )
    st = path.stat()
    assert json.loads(path.read_text()) == {"token": "rewritten by another user"}
    if member:
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (OTHER_UID, 4322, 0o660)
    else:
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (OTHER_UID, OTHER_UID, 0o666)


_OPEN_AS_OTHER = r"""
import sys
sys.path.insert(0, sys.argv[2])
import persistdict
for flag in ("c", "w", "n"):
    try:
        d = persistdict.open(sys.argv[1], flag, backend=sys.argv[3])
    except persistdict.ReadOnlyError as exc:
        print(exc)
    else:
        d["token"] = "written"
        d.close()
        print("written")
from persistdict.migrate import copy as convert
try:
    convert(sys.argv[4], sys.argv[1], dst_backend=sys.argv[3], existing="replace")
except persistdict.ReadOnlyError as exc:
    print(exc)
else:
    print("written")
with persistdict.open(sys.argv[1], "r", backend=sys.argv[3]) as d:
    print(d["token"])
"""


@needs_root
@pytest.mark.parametrize("backend", ["json", "csv", "pickle", "dbm"])
@pytest.mark.parametrize("owner", [True, False], ids=["owner", "other-user"])
def test_a_file_the_user_may_not_write_is_refused_not_replaced(
    open_folder: Path, backend: str, owner: bool
) -> None:
    """A read-only file (its owner's chmod 444, or another user's 0644) in a folder the user
    may write to: a save would rename a new file over it, which the folder allows. Opening
    it to write is refused as open(path, "w") and sqlite3 refuse; reading it still works."""
    open_folder.chmod(0o777)
    path = open_folder / f"kept.{backend}"
    with persistdict.open(path, backend=backend) as d:
        d["token"] = "original"
    files = sorted(p for p in open_folder.iterdir() if p.name.startswith("kept."))
    assert files
    for file in files:
        os.chown(file, OTHER_UID if owner else 4321, OTHER_UID if owner else 4321)
        file.chmod(0o444 if owner else 0o644)
    before = {file.name: file.read_bytes() for file in files}
    source = open_folder / "source.json"
    source.write_text('{"token": "converted"}')
    src = str(Path(persistdict.__file__).resolve().parents[1])
    command = ["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups"]
    done = subprocess.run(
        [
            *command,
            sys.executable,
            "-I",
            "-c",
            _OPEN_AS_OTHER,
            str(path),
            src,
            backend,
            str(source),
        ],
        timeout=60,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "original"
    for line in lines[:-1]:
        assert line.startswith(repr(str(path))[:-1]), line
        assert "read-only" in line, line
        assert "open it with flag='r' to read it" in line, line
        assert "chmod u+w" in line, line
    assert len(lines) == 5  # open with c, w, n; convert; the read
    assert {file.name: file.read_bytes() for file in files} == before


@needs_root
@pytest.mark.parametrize("name", ["shared.json", "shared.db"])
def test_convert_replacing_a_file_keeps_its_owner_group_and_mode(
    open_folder: Path, name: str
) -> None:
    path = open_folder / name
    with persistdict.open(path) as d:
        d["old"] = "1"
    os.chown(path, 4321, 4322)
    path.chmod(0o640)
    source = open_folder / "source.json"
    source.write_text('{"new": "2"}')
    convert(str(source), str(path), existing="replace")
    st = path.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (4321, 4322, 0o640)
    with persistdict.open(path, "r") as d:
        assert dict(d) == {"new": "2"}


def test_reopened_dbm_keeps_its_mode(tmp_path: Path) -> None:
    """dbm.dumb rewrites its index (the keys) with the mode it is opened with: reopening a
    0600 database without mode= made the index 0644 on 0.1."""
    path = tmp_path / "secret.dbm"
    with persistdict.open(path, backend="dbm", mode=0o600) as d:
        d["token"] = "s3cret"
    with persistdict.open(path, backend="dbm") as d:
        d["token2"] = "s3cret"
    modes = {
        p.name: stat.S_IMODE(p.stat().st_mode)
        for p in tmp_path.iterdir()
        if p.name.startswith("secret.dbm")
    }
    assert modes
    assert modes == dict.fromkeys(modes, 0o600)
