"""Symlinks: side files never follow one; a data file planted as one by another user in a
shared sticky folder is refused; elsewhere a symlinked data file is written through
(docs/security.md, "Symlinks")."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest

import persistdict
from persistdict import fileio

from .helpers import OTHER_UID, needs_root, plant_symlink, run_as_other

SECRET = b"victim's own data: never to be truncated or overwritten\n"
# Every backend that opens a local file or folder; the name picks the backend.
FILE_NAMES = {
    "json": "data.json",
    "csv": "data.csv",
    "pickle": "data.pkl",
    "sqlite": "data.db",
    "dbm": "data.dbm",
    "lmdb": "data.lmdb",
}
FLAGS = ["c", "n", "w", "r"]


def _victim(folder: Path) -> tuple[Path, os.stat_result]:
    victim = folder / "victim.txt"
    victim.write_bytes(SECRET)
    return victim, victim.stat()


def _unchanged(victim: Path, before: os.stat_result) -> None:
    assert victim.read_bytes() == SECRET
    after = victim.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )


def _open(path: Path, backend: str, flag: str) -> persistdict.PersistDict:
    if backend == "pickle":
        return persistdict.open(path, flag, format="pickle")
    return persistdict.open(path, flag, backend=backend)


# Side files.


@pytest.mark.parametrize("backend", ["json", "csv", "pickle", "dbm"])
def test_symlink_at_the_lock_file_is_refused_and_not_followed(tmp_path: Path, backend: str) -> None:
    """On 0.1 the lock file followed the link, truncated its target and wrote a pid in it."""
    victim, before = _victim(tmp_path)
    data = tmp_path / FILE_NAMES[backend]
    lock = tmp_path / f".{data.name}.persistdict-lock"
    lock.symlink_to(victim)
    with pytest.raises(PermissionError) as info:
        _open(data, backend, "c")
    assert repr(str(lock)) in str(info.value)
    assert "symlink" in str(info.value)
    _unchanged(victim, before)
    assert lock.is_symlink()
    assert not data.exists()


def test_dangling_symlink_at_the_lock_file_creates_nothing(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    lock = tmp_path / ".data.json.persistdict-lock"
    lock.symlink_to(elsewhere)
    with pytest.raises(PermissionError, match="symlink"):
        persistdict.open(tmp_path / "data.json")
    assert not elsewhere.exists()


def test_hard_link_at_the_lock_file_is_refused(tmp_path: Path) -> None:
    victim, before = _victim(tmp_path)
    lock = tmp_path / ".data.json.persistdict-lock"
    os.link(victim, lock)
    with pytest.raises(PermissionError, match="hard links") as info:
        persistdict.open(tmp_path / "data.json")
    assert repr(str(lock)) in str(info.value)
    _unchanged(victim, before)


def test_fifo_at_the_lock_file_is_refused_without_hanging(tmp_path: Path) -> None:
    lock = tmp_path / ".data.json.persistdict-lock"
    os.mkfifo(lock)
    with pytest.raises(PermissionError, match="not a regular file"):
        persistdict.open(tmp_path / "data.json")


@pytest.mark.parametrize("side", ["-wal", "-shm", "-journal"])
def test_symlink_at_a_sqlite_side_file_is_refused_by_name(tmp_path: Path, side: str) -> None:
    victim, before = _victim(tmp_path)
    data = tmp_path / "data.db"
    with persistdict.open(data) as d:
        d["a"] = "1"
    link = Path(f"{data}{side}")
    link.symlink_to(victim)
    for flag in ("c", "r"):
        with pytest.raises(PermissionError, match="symlink") as info:
            persistdict.open(data, flag)
        assert repr(str(link)) in str(info.value)
    _unchanged(victim, before)


def test_symlink_at_the_previous_generation_is_refused_on_write(tmp_path: Path) -> None:
    victim, before = _victim(tmp_path)
    data = tmp_path / "data.json"
    with persistdict.open(data) as d:
        d["a"] = 1
    prev = fileio.previous_path(data)
    prev.unlink(missing_ok=True)
    prev.symlink_to(victim)
    with pytest.raises(PermissionError) as info:
        persistdict.open(data)
    assert repr(str(prev)) in str(info.value)
    _unchanged(victim, before)
    # Planted while the dict is open: its next save is refused, the data stays in memory.
    prev.unlink()
    d = persistdict.open(data)
    prev.symlink_to(victim)
    d["a"] = 2
    with pytest.raises(PermissionError, match="symlink"):
        d.flush()
    _unchanged(victim, before)
    assert json.loads(data.read_text()) == {"a": 1}
    prev.unlink()
    d.close()
    assert json.loads(data.read_text()) == {"a": 2}


def test_symlink_at_the_previous_generation_is_never_restored(tmp_path: Path) -> None:
    """recover=True on 0.1 read the link's target as the previous generation and renamed
    the link over the data file, which then pointed at a file of the planter's choosing."""
    planted = tmp_path / "planted.json"
    planted.write_text('{"admin": true}')
    data = tmp_path / "data.json"
    data.write_text('{"a": 1')  # damaged
    prev = fileio.previous_path(data)
    prev.symlink_to(planted)
    for flag in ("c", "r"):
        with pytest.raises(PermissionError) as info:
            persistdict.open(data, flag, recover=True)
        assert repr(str(prev)) in str(info.value)
    assert not data.is_symlink()
    assert data.read_text() == '{"a": 1'
    with pytest.raises(PermissionError, match="symlink"):
        fileio.restore_previous(data)
    assert not data.is_symlink()


@needs_root
def test_previous_generation_of_another_user_is_never_restored(open_folder: Path) -> None:
    data = open_folder / "data.json"
    data.write_text('{"a": 1')  # damaged, ours
    prev = fileio.previous_path(data)
    prev.write_text('{"admin": true}')
    os.chown(prev, OTHER_UID, OTHER_UID)
    with pytest.raises(PermissionError, match=f"uid {OTHER_UID}") as info:
        persistdict.open(data, recover=True)
    assert repr(str(prev)) in str(info.value)
    assert data.read_text() == '{"a": 1'
    assert prev.stat().st_uid == OTHER_UID


# Data files in shared sticky folders.


@needs_root
@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize("backend", list(FILE_NAMES))
def test_planted_data_link_in_a_sticky_folder_is_refused(
    sticky_folder: Path, open_folder: Path, backend: str, flag: str
) -> None:
    """Another user's symlink at the data file's name in a folder like /tmp: every backend
    refuses it for every flag, naming it; the file it points at is untouched."""
    victim, before = _victim(open_folder)
    if backend == "lmdb":
        target = open_folder / "victim.lmdb"
        with persistdict.open(target, backend="lmdb") as d:
            d["a"] = 1
        victim = target / "data.mdb"
        before = victim.stat()
    else:
        target = victim
    data = plant_symlink(sticky_folder / FILE_NAMES[backend], target)
    snapshot = victim.read_bytes()
    with pytest.raises(PermissionError) as info:
        _open(data, backend, flag)
    message = str(info.value)
    assert repr(str(data)) in message
    assert f"uid {OTHER_UID}" in message
    assert "sticky" in message
    assert victim.read_bytes() == snapshot
    assert victim.stat().st_mtime_ns == before.st_mtime_ns
    assert sorted(p.name for p in sticky_folder.iterdir()) == [data.name]


@needs_root
@pytest.mark.parametrize("backend", ["json", "sqlite", "dbm"])
def test_planted_dangling_link_in_a_sticky_folder_creates_nothing(
    sticky_folder: Path, open_folder: Path, backend: str
) -> None:
    elsewhere = open_folder / "created-by-the-planter's-wish"
    data = plant_symlink(sticky_folder / FILE_NAMES[backend], elsewhere)
    with pytest.raises(PermissionError, match="sticky"):
        _open(data, backend, "c")
    assert os.listdir(open_folder) == []


@needs_root
def test_planted_link_without_extension_is_refused_before_sniffing(
    sticky_folder: Path, open_folder: Path
) -> None:
    victim, before = _victim(open_folder)
    data = plant_symlink(sticky_folder / "data", victim)
    with pytest.raises(PermissionError, match="sticky") as info:
        persistdict.open(data)
    assert repr(str(data)) in str(info.value)
    _unchanged(victim, before)


@needs_root
def test_planted_folder_link_on_the_way_is_refused(sticky_folder: Path, open_folder: Path) -> None:
    victim, before = _victim(open_folder)
    (open_folder / "data.json").write_bytes(SECRET)
    way = plant_symlink(sticky_folder / "shared", open_folder)
    with pytest.raises(PermissionError) as info:
        persistdict.open(way / "data.json", "n")
    assert repr(str(way)) in str(info.value)
    assert repr(str(way / "data.json")) in str(info.value)
    assert (open_folder / "data.json").read_bytes() == SECRET
    _unchanged(victim, before)


@needs_root
def test_planted_link_is_refused_through_the_cli_and_convert(
    sticky_folder: Path, open_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from persistdict.cli import main
    from persistdict.migrate import copy

    victim, before = _victim(open_folder)
    data = plant_symlink(sticky_folder / "data.json", victim)
    assert main(["set", str(data), "k", '"v"']) != 0
    err = capsys.readouterr().err
    assert repr(str(data)) in err
    assert "sticky" in err
    source = open_folder / "source.json"
    source.write_text('{"k": "v"}')
    with pytest.raises(PermissionError, match="sticky"):
        copy(str(source), str(data), existing="replace")
    _unchanged(victim, before)


@needs_root
@pytest.mark.parametrize("backend", list(FILE_NAMES))
def test_file_planted_in_a_sticky_folder_is_refused_by_flags_that_create(
    sticky_folder: Path, backend: str
) -> None:
    """Another user made the data file in advance, readable by them: flags c and n refuse it
    (Linux's protected_regular rule) rather than write into it; w and r open it, as asked."""
    data = sticky_folder / FILE_NAMES[backend]
    with _open(data, backend, "c") as d:
        d["planted"] = "by them"
    for path in sticky_folder.rglob("*"):  # everything the backend made is now theirs
        os.lchown(path, OTHER_UID, OTHER_UID)
    before = {p: p.read_bytes() for p in sticky_folder.rglob("*") if p.is_file()}
    for flag in ("c", "n"):
        with pytest.raises(PermissionError, match="exists already") as info:
            _open(data, backend, flag)
        assert f"uid {OTHER_UID}" in str(info.value)
    assert {p: p.read_bytes() for p in sticky_folder.rglob("*") if p.is_file()} == before
    with _open(data, backend, "r") as d:
        assert dict(d) == {"planted": "by them"}


@needs_root
@pytest.mark.parametrize("name", ["data.json", "data.db"])
def test_convert_into_an_empty_file_planted_in_a_sticky_folder_is_refused(
    sticky_folder: Path, open_folder: Path, name: str
) -> None:
    """An empty planted file passes convert's "destination holds keys" check; the copy
    would then have been given to the planter (a rewrite keeps the file's owner)."""
    from persistdict.migrate import copy

    data = sticky_folder / name
    persistdict.open(data).close()
    for path in sticky_folder.rglob("*"):
        os.lchown(path, OTHER_UID, OTHER_UID)
    source = open_folder / "source.json"
    source.write_text('{"token": "s3cret"}')
    with pytest.raises(PermissionError, match="exists already"):
        copy(str(source), str(data))
    with persistdict.open(data, "r") as d:
        assert dict(d) == {}
    assert data.stat().st_uid == OTHER_UID


@needs_root
def test_file_of_the_folder_owner_in_a_sticky_folder_is_opened(
    others_sticky_folder: Path,
) -> None:
    data = others_sticky_folder / "data.json"
    data.write_text('{"a": 1}')
    os.chown(data, OTHER_UID, OTHER_UID)
    with persistdict.open(data) as d:
        assert dict(d) == {"a": 1}


@needs_root
def test_another_users_file_with_a_temp_name_does_not_block_opening(sticky_folder: Path) -> None:
    """Opening for writing removes temp files a crash left; one planted by another user in a
    sticky folder can't be removed and must not make the open fail."""
    planted = sticky_folder / ".data.json.persistdict-0123456789abcdef.tmp"
    planted.write_text("planted")
    src = str(Path(persistdict.__file__).resolve().parents[1])
    code = (
        "import sys\nsys.path.insert(0, sys.argv[2])\nimport persistdict\n"
        "with persistdict.open(sys.argv[1]) as d:\n    d['a'] = 1\n"
    )
    result = run_as_other(code, str(sticky_folder / "data.json"), src)
    assert result.returncode == 0, result.stderr
    assert json.loads((sticky_folder / "data.json").read_text()) == {"a": 1}
    assert planted.read_text() == "planted"


@needs_root
def test_link_of_the_folder_owner_or_our_own_is_followed(
    others_sticky_folder: Path, sticky_folder: Path, open_folder: Path
) -> None:
    """The kernel's rule: a link in a sticky folder is followed when it is the follower's
    own or the folder owner's. Such links are written through to their target."""
    real = open_folder / "real.json"
    real.write_text('{"a": 1}')
    theirs = plant_symlink(others_sticky_folder / "data.json", real, owner=OTHER_UID)
    ours = plant_symlink(sticky_folder / "data.json", real, owner=os.geteuid())
    for link, value in ((theirs, 2), (ours, 3)):
        with persistdict.open(link) as d:
            d["a"] = value
        assert link.is_symlink()
        assert json.loads(real.read_text()) == {"a": value}


# Symlinks anywhere else.


@needs_root
@pytest.mark.parametrize("suffix", [".dat", ".dir", ".bak", ".db", ".pag"])
def test_planted_link_at_a_dbm_side_name_is_refused(
    sticky_folder: Path, open_folder: Path, suffix: str
) -> None:
    """dbm.dumb keeps data.dbm.dat/.dir/.bak, ndbm data.dbm.db: each name is checked."""
    victim, before = _victim(open_folder)
    data = sticky_folder / "data.dbm"
    planted = plant_symlink(sticky_folder / ("data.dbm" + suffix), victim)
    for flag in ("c", "n"):
        with pytest.raises(PermissionError) as info:
            persistdict.open(data, flag, backend="dbm")
        assert repr(str(planted)) in str(info.value)
    _unchanged(victim, before)


# dbm is left out: dbm.dumb keeps three files and renames over them, whatever they are.
@pytest.mark.parametrize("backend", [b for b in FILE_NAMES if b != "dbm"])
def test_symlinked_data_file_elsewhere_is_written_through(tmp_path: Path, backend: str) -> None:
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    real = real_dir / FILE_NAMES[backend]
    with _open(real, backend, "c") as d:
        d["a"] = "1"
    link = tmp_path / ("link" + real.suffix)
    link.symlink_to(real)
    with _open(link, backend, "w") as d:
        d["b"] = "2"
    assert link.is_symlink()
    with _open(real, backend, "r") as d:
        assert dict(d) == {"a": "1", "b": "2"}
    with _open(link, backend, "n") as d:
        assert dict(d) == {}
    assert link.is_symlink()
    with _open(real, backend, "r") as d:
        assert dict(d) == {}


def test_resolve_data_path_matches_realpath_for_ordinary_links(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "up").symlink_to("a/b/..")
    (tmp_path / "abs").symlink_to(tmp_path / "a" / "b")
    (tmp_path / "chain").symlink_to("abs")
    for given in ["up/x.json", "abs/../b/x.json", "chain/x.json", "a/./b/../x", "missing/y"]:
        path = tmp_path / given
        assert fileio.resolve_data_path(path) == Path(os.path.realpath(path)), given
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(OSError, match="too many levels") as info:
        fileio.resolve_data_path(tmp_path / "loop" / "x.json")
    assert info.value.errno == errno.ELOOP


def test_lock_file_is_a_plain_file_beside_the_target(tmp_path: Path) -> None:
    with persistdict.open(tmp_path / "data.json") as d:
        d["a"] = 1
    lock = tmp_path / ".data.json.persistdict-lock"
    assert stat.S_ISREG(lock.lstat().st_mode)


@pytest.mark.parametrize("existing", ["replace", "merge"])
def test_convert_into_a_symlinked_file_writes_through_and_keeps_the_link(
    tmp_path: Path, existing: str
) -> None:
    from persistdict.migrate import copy

    real_dir = tmp_path / "real"
    real_dir.mkdir()
    real = real_dir / "data.json"
    real.write_text('{"old": 1}')
    real.chmod(0o640)
    link = tmp_path / "data.json"
    link.symlink_to(real)
    source = tmp_path / "source.json"
    source.write_text('{"k": "v"}')
    copy(str(source), str(link), existing=existing)
    assert link.is_symlink()
    expected = {"k": "v"} if existing == "replace" else {"old": 1, "k": "v"}
    assert json.loads(real.read_text()) == expected
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
