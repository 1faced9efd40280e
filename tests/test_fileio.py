"""atomic_write and its helpers: permissions, owners, symlinks, the previous generation."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

import persistdict
from persistdict import fileio
from persistdict.fileio import atomic_write, previous_path, remove_stale_temps


def test_replaces_content_and_leaves_only_the_target(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    atomic_write(path, b"one")
    atomic_write(path, b"two")
    assert path.read_bytes() == b"two"
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def test_new_file_gets_mode_less_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a", b"x")
        atomic_write(tmp_path / "b", b"x", mode=0o640)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o640


def test_rewrite_keeps_permissions_even_read_only_ones(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    atomic_write(path, b"one")
    path.chmod(0o400)
    atomic_write(path, b"two", mode=0o666)
    assert stat.S_IMODE(path.stat().st_mode) == 0o400
    assert path.read_bytes() == b"two"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to chown")
def test_rewrite_by_root_keeps_the_owner(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    atomic_write(path, b"one")
    os.chown(path, 4321, 4322)
    atomic_write(path, b"two")
    assert (path.stat().st_uid, path.stat().st_gid) == (4321, 4322)


def test_symlink_is_written_through_and_stays_a_link(tmp_path: Path) -> None:
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    real = real_dir / "state.json"
    atomic_write(real, b"one")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    atomic_write(link, b"two", keep_previous=True)
    assert link.is_symlink()
    assert real.read_bytes() == b"two"
    # The previous generation sits beside the file the link points at, not beside the link.
    assert previous_path(link) == real_dir / ".state.json.persistdict-prev"
    assert (real_dir / ".state.json.persistdict-prev").read_bytes() == b"one"
    assert sorted(os.listdir(tmp_path)) == ["link.json", "real"]


def test_previous_generation_is_a_hard_link_not_a_copy(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    atomic_write(path, b"one", keep_previous=True)
    assert not previous_path(path).exists()  # nothing came before the first version
    first_inode = path.stat().st_ino
    atomic_write(path, b"two", keep_previous=True)
    atomic_write(path, b"three", keep_previous=True)
    prev = previous_path(path)
    assert prev.read_bytes() == b"two"
    assert prev.stat().st_nlink == 1
    assert prev.stat().st_ino != first_inode  # "one" was let go, not copied along
    assert sorted(os.listdir(tmp_path)) == [".state.json.persistdict-prev", "state.json"]


def test_failed_link_still_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """File systems without hard links (FAT, some network mounts) keep no previous generation."""
    path = tmp_path / "state.json"
    atomic_write(path, b"one")

    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    atomic_write(path, b"two", keep_previous=True)
    assert path.read_bytes() == b"two"
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def test_folder_fsync_unsupported_is_ignored_but_io_errors_are_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync

    def fsync_failing(err: int) -> object:
        def fsync(fd: int) -> None:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                raise OSError(err, os.strerror(err))
            real_fsync(fd)

        return fsync

    path = tmp_path / "state.json"
    monkeypatch.setattr(os, "fsync", fsync_failing(errno.EINVAL))
    atomic_write(path, b"one")
    assert path.read_bytes() == b"one"
    monkeypatch.setattr(os, "fsync", fsync_failing(errno.EIO))
    with pytest.raises(OSError, match="Input/output error") as caught:
        atomic_write(path, b"two")
    assert caught.value.errno == errno.EIO
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def test_remove_stale_temps_touches_only_our_names(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{}")
    ours = [
        tmp_path / ".state.json.persistdict-0123456789abcdef.tmp",
        tmp_path / ".state.json.persistdict-fedcba9876543210.tmp",
    ]
    theirs = [
        tmp_path / "state.json.tmp",
        tmp_path / ".state.json.persistdict-0123.tmp",  # not 16 hex digits
        tmp_path / ".other.json.persistdict-0123456789abcdef.tmp",
        tmp_path / ".state.json.persistdict-prev",
        tmp_path / ".state.json.persistdict-lock",
    ]
    for p in ours + theirs:
        p.write_text("x")
    assert sorted(remove_stale_temps(path)) == sorted(ours)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [p.name for p in theirs] + ["state.json"]
    )


def test_open_removes_stale_temps_but_a_reader_does_not(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with persistdict.open(path) as d:
        d["k"] = 1
    stale = tmp_path / ".state.json.persistdict-0123456789abcdef.tmp"
    stale.write_text('{"half": ')
    with persistdict.open(path, flag="r") as r:
        assert dict(r) == {"k": 1}
    assert stale.exists()  # a reader holds no lock: the temp might be a live writer's
    with persistdict.open(path) as d:
        assert dict(d) == {"k": 1}
    assert not stale.exists()


def test_unchanged_flush_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with persistdict.open(path) as d:
        d["k"] = {"n": 1}
    before = path.stat()
    with persistdict.open(path) as d:
        d.flush()
        d["k"]["n"] = 1  # the same value again
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.parametrize(
    ("name", "backend", "text"),
    [
        ("state.json", "json", '{\n    "b": [1,2],\n    "a": "x"\n}'),
        ("state.csv", "csv", "a,x\nb,y\n"),
    ],
)
def test_file_in_another_layout_is_not_rewritten_by_a_no_change_close(
    tmp_path: Path, name: str, backend: str, text: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with persistdict.open(path, backend=backend) as d:
        assert len(d) == 2
    assert path.read_text() == text
    with persistdict.open(path, backend=backend) as d:
        d["c"] = "new"
    with persistdict.open(path, backend=backend, flag="r") as d:
        assert d["c"] == "new"


def test_replace_durably_is_os_replace_here(tmp_path: Path) -> None:
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_text("new")
    dst.write_text("old")
    fileio.replace_durably(src, dst)
    assert dst.read_text() == "new"
    assert not src.exists()


def test_nested_change_to_a_file_in_another_layout_is_saved(tmp_path: Path) -> None:
    # Nothing passes through set(), and the file's bytes were never this backend's own
    # encoding: the flush must still notice that the data differs from the file.
    path = tmp_path / "state.json"
    path.write_text('{\n    "cfg": {"root": "/srv"}\n}')
    with persistdict.open(path) as d:
        d["cfg"]["root"] = "/data"
    with persistdict.open(path, "r") as d:
        assert d == {"cfg": {"root": "/data"}}
    before = path.read_bytes()
    with persistdict.open(path) as d:  # now in our layout: a no-change close writes nothing
        assert d["cfg"] == {"root": "/data"}
    assert path.read_bytes() == before
