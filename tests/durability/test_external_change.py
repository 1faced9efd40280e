"""Another program changes a snapshot file under an open writer: never overwritten unseen.

Editors save either by writing a new file and renaming it over the old one (a new inode) or
by rewriting the file in place (same inode, new size or times); scripts may even set the
modification time back. Each is caught at the next flush with ``ConflictError`` naming the
file, the file keeps the other program's bytes, and ``refresh()`` or ``flush(force=True)``
resolves it. A flush with nothing to save writes nothing and raises nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict import ConflictError
from persistdict.backends.snapshot import _identity

FILES = {"json": "state.json", "csv": "state.csv", "pickle": "state.bin"}
THEIRS = {"json": b'{"theirs": "x"}\n', "csv": b"key,value\r\ntheirs,x\r\n"}


def _theirs(backend: str) -> bytes:
    if backend == "pickle":
        import pickle

        return pickle.dumps({"theirs": "x"})
    return THEIRS[backend]


def _by_rename(path: Path, raw: bytes) -> None:
    """An editor that writes a new file and renames it into place (vim, most IDEs)."""
    tmp = path.with_name(path.name + ".swp")
    tmp.write_bytes(raw)
    os.replace(tmp, path)


def _in_place(path: Path, raw: bytes) -> None:
    """An editor or script that truncates and rewrites the same file (nano, json.dump)."""
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(raw)


def _in_place_same_size_old_mtime(path: Path, raw: bytes) -> None:
    """A rewrite of the same length that then sets the modification time back, as
    ``cp -p`` or ``rsync -t`` would: only the change time (and the bytes) tell. ``raw`` is
    not used: the value "1" becomes "9" in the file's own bytes."""
    before = os.stat(path)
    same = path.read_bytes().replace(b"1", b"9")
    assert len(same) == before.st_size
    _in_place(path, same)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(path).st_mtime_ns == before.st_mtime_ns


EDITS: dict[str, Callable[[Path, bytes], None]] = {
    "rename": _by_rename,
    "in_place": _in_place,
    "same_size_old_mtime": _in_place_same_size_old_mtime,
}


@pytest.mark.parametrize("edit", sorted(EDITS))
@pytest.mark.parametrize("backend", sorted(FILES))
def test_external_change_is_not_overwritten_by_the_next_flush(
    tmp_path: Path, backend: str, edit: str
) -> None:
    path = tmp_path / FILES[backend]
    with persistdict.open(path, backend=backend) as first:
        first["mine"] = "1"
    # Loaded well after its last change, so stat() alone decides (no byte comparison
    # unless stat differs): each kind of edit must show in the stat.
    time.sleep(0.15)
    d = persistdict.open(path, backend=backend)
    assert not d.backend._disk_racy  # type: ignore[attr-defined]
    theirs = _theirs(backend)
    EDITS[edit](path, theirs)
    on_disk = path.read_bytes()
    d["mine"] = "2"
    with pytest.raises(ConflictError) as caught:
        d.flush()
    message = str(caught.value)
    assert repr(str(path)) in message
    assert "changed by another program" in message
    assert "d.refresh()" in message
    assert "d.flush(force=True)" in message
    assert "\n" not in message
    assert path.read_bytes() == on_disk  # their change kept
    with pytest.raises(ConflictError):
        d.close()  # close saves too: the same refusal, and the dict stays open
    assert not d.closed
    assert path.read_bytes() == on_disk
    d.refresh()  # take their version; "mine" = "2" was unsaved and is dropped
    expected = {"mine": "9"} if edit == "same_size_old_mtime" else {"theirs": "x"}
    assert dict(d) == expected
    d["new"] = "3"
    d.close()
    with persistdict.open(path, backend=backend, flag="r") as r:
        assert dict(r) == {**expected, "new": "3"}


@pytest.mark.parametrize("backend", sorted(FILES))
def test_flush_force_writes_over_the_external_change(tmp_path: Path, backend: str) -> None:
    path = tmp_path / FILES[backend]
    with persistdict.open(path, backend=backend) as d:
        d["mine"] = "1"
        d.flush()
        _by_rename(path, _theirs(backend))
        d["mine"] = "2"
        d.flush(force=True)
    with persistdict.open(path, backend=backend, flag="r") as r:
        assert dict(r) == {"mine": "2"}


def test_a_change_in_the_same_timestamp_tick_is_seen(tmp_path: Path) -> None:
    # On a file system with coarse timestamps, a rewrite of the same size within the tick
    # of the flush leaves stat() exactly as it was. Kernels with fine-grained timestamps
    # (Linux 6.13+) never show that, so the equal stat is set here by hand: the bytes must
    # still be compared.
    path = tmp_path / "state.json"
    with persistdict.open(path) as d:
        d["n"] = 1
        d.flush()
        _in_place(path, path.read_bytes().replace(b"1", b"2"))
        backend: Any = d.backend
        backend._disk = _identity(os.stat(path))  # what a coarse file system would show
        d["x"] = 1
        with pytest.raises(ConflictError):
            d.flush()
        d.refresh()
        assert dict(d) == {"n": 2}


def test_a_change_made_right_after_a_flush_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with persistdict.open(path) as d:
        for round_ in range(20):
            d["n"] = round_
            d.flush()
            raw = path.read_bytes()
            other = raw.replace(f'"n": {round_}'.encode(), f'"n": {round_ + 100}'.encode())
            if len(str(round_)) != len(str(round_ + 100)):
                other = raw.replace(b'"n"', b'"m"')
            assert len(other) == len(raw)
            _in_place(path, other)
            d["x"] = round_
            with pytest.raises(ConflictError):
                d.flush()
            d.refresh()
        d.flush(force=True)


def test_unchanged_bytes_or_nothing_to_save_raise_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with persistdict.open(path) as d:
        d["a"] = 1
        d.flush()
        raw = path.read_bytes()
        _by_rename(path, raw)  # copied over with the same bytes: a new inode, same version
        os.utime(path, ns=(0, 0))
        d["b"] = 2
        d.flush()  # not a conflict: nothing of another program's is lost
        _by_rename(path, b'{"theirs": 1}\n')
    # Nothing changed in the dict since: close writes nothing, so no conflict either.
    assert path.read_bytes() == b'{"theirs": 1}\n'


def test_a_deleted_file_is_saved_again(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with persistdict.open(path) as d:
        d["a"] = 1
        d.flush()
        path.unlink()
        d["b"] = 2
    with persistdict.open(path, flag="r") as r:
        assert dict(r) == {"a": 1, "b": 2}


def test_refresh_inside_a_transaction_is_refused(tmp_path: Path) -> None:
    with persistdict.open(tmp_path / "state.json") as d:
        d["a"] = 1
        with d.transaction():
            d["b"] = 2
            with pytest.raises(ValueError, match="inside transaction"):
                d.refresh()
        assert dict(d) == {"a": 1, "b": 2}


def test_a_conflicting_transaction_is_undone_whole(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with persistdict.open(path) as d:
        d["a"] = 1
        d.flush()
        _by_rename(path, b'{"theirs": 1}\n')
        with pytest.raises(ConflictError), d.transaction():
            d["a"] = 2
        assert dict(d) == {"a": 1}
        assert path.read_bytes() == b'{"theirs": 1}\n'
        d.refresh()


def test_exit_time_save_reports_the_conflict_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    script = (
        "import os, persistdict\n"
        f"d = persistdict.open({str(path)!r})\n"
        "d['mine'] = 1\n"
        "d.flush()\n"
        f"open({str(path) + '.new'!r}, 'w').write('{{\"theirs\": 1}}')\n"
        f"os.replace({str(path) + '.new'!r}, {str(path)!r})\n"
        "d['mine'] = 2\n"
        "print('done')\n"  # exits without close(): the exit-time save meets the change
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("persistdict: could not save <PersistDict json ")
    assert "changed by another program" in lines[0]
    assert "Traceback" not in result.stderr
    assert path.read_text() == '{"theirs": 1}'
