"""Scratch folders of convert: a killed run's is removed by the next run on that destination
and by ``persistdict check``, a running one's never; a several-file copy killed while being
moved into place is finished; dbm destinations that can't be swapped in one step are refused.
"""

from __future__ import annotations

import dbm
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import persistdict
from persistdict.migrate.target import SCRATCH_MARKER, remove_dead_scratches
from tests.migrate.test_kills import OLD, SOURCE, Paused
from tests.test_cli import run as cli

HERE = Path(__file__).parent


def scratches(dst: Path) -> list[Path]:
    return sorted(dst.parent.glob(f".{dst.name}{SCRATCH_MARKER}*"))


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "src.json"
    path.write_text(json.dumps(SOURCE))
    return path


def test_check_removes_a_killed_convert_s_scratch_but_not_a_running_one_s(
    tmp_path: Path, src: Path
) -> None:
    dst = tmp_path / "out.json"
    running = Paused("convert", str(src), str(dst), "-q")
    running.wait_for_batch(1)
    (live,) = scratches(dst)
    killed = Paused("convert", str(src), str(dst), "-q")
    killed.wait_for_batch(1)
    (dead,) = set(scratches(dst)) - {live}
    killed.end(signal.SIGKILL)
    result = cli("check", dst)
    assert result.returncode == 3  # the destination does not exist yet
    assert result.stderr.startswith(
        f"persistdict: note: removed {str(dead)!r}, left by a convert that was killed\n"
    )
    assert scratches(dst) == [live], "the running convert's scratch must stay"
    running.go_on()
    running.go_on()
    running.go_on()
    _, stderr = running.proc.communicate(timeout=60)
    assert running.proc.returncode == 0, stderr
    assert scratches(dst) == []
    with persistdict.open(dst, "r") as d:
        assert dict(d.items()) == SOURCE


def test_the_next_convert_removes_a_dead_scratch_and_its_lock_names_the_owner(
    tmp_path: Path, src: Path
) -> None:
    dst = tmp_path / "out.db"
    killed = Paused("convert", str(src), str(dst), "-q")
    killed.wait_for_batch(1)
    pid = killed.proc.pid
    (scratch,) = scratches(dst)
    owner = scratch / ".owner.persistdict-lock"
    assert owner.read_text() == str(pid)
    assert remove_dead_scratches(dst) == [], "a live convert's scratch was removed"
    killed.end(signal.SIGKILL)
    assert scratch.exists()
    assert cli("convert", src, dst, "-q").returncode == 0
    assert scratches(dst) == []
    with persistdict.open(dst, "r") as d:
        assert len(d) == len(SOURCE)


def test_a_scratch_without_an_owner_is_kept_for_a_minute_then_removed(tmp_path: Path) -> None:
    # A convert is between making its scratch folder and locking it: leave it alone.
    dst = tmp_path / "out.json"
    young = tmp_path / f".out.json{SCRATCH_MARKER}abcd1234"
    old = tmp_path / f".out.json{SCRATCH_MARKER}efgh5678"
    other = tmp_path / f".other.json{SCRATCH_MARKER}abcd1234"
    for folder in (young, old, other):
        folder.mkdir()
        (folder / "out.json").write_text("{}")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    os.utime(other, (an_hour_ago, an_hour_ago))
    assert remove_dead_scratches(dst) == [str(old)]
    assert young.exists()
    assert other.exists(), "another destination's scratch is not this run's business"


def test_a_several_file_dbm_killed_while_moved_into_place_is_finished_by_check(
    tmp_path: Path, src: Path
) -> None:
    dst = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            HERE / "killed_mid_move.py",
            "KILL",
            "convert",
            src,
            dst,
            "--backend",
            "dbm",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    kind = dbm.whichdb(str(dst))
    # A one-file dbm (dbm.sqlite3, the default on Python 3.13) is moved into place by one
    # rename: it is whole already, and only its scratch folder is left for check to remove.
    if not kind or kind == "dbm.dumb":
        assert not kind, "half-moved files must not look like a database"
    result = cli("check", dst, "--backend", "dbm")
    assert result.returncode == 0, result.stderr
    assert scratches(dst) == []
    with persistdict.open(dst, "r", backend="dbm") as d:
        assert dict(d.items()) == SOURCE


def digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.endswith(".persistdict-lock")
    }


def test_merging_into_a_several_file_dbm_is_refused_saying_why(tmp_path: Path, src: Path) -> None:
    dst = tmp_path / "out"
    with persistdict.open(dst, backend="dbm") as d:
        d.update(OLD)
    if dbm.whichdb(str(dst)) != "dbm.dumb":
        pytest.skip("this Python's dbm keeps one file, which is swapped whole")
    before = digests(tmp_path)
    result = cli("convert", src, dst, "--merge", "--backend", "dbm")
    assert result.returncode == 3
    assert result.stderr == (
        f"persistdict: error: dbm {str(dst)!r} is a dbm.dumb database kept in several files "
        f"({str(dst) + '.dat'!r} and {str(dst) + '.dir'!r}), which can't be replaced together "
        "in one step, so a killed or interrupted copy into it could leave it half-written; "
        "nothing was written. Copy into a new file instead (and move it over the old one "
        "yourself), or into SQLite, which has transactions\n"
    )
    load = subprocess.run(
        [sys.executable, "-m", "persistdict", "load", dst, "--backend", "dbm"],
        input='{"a": 1}',
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert load.returncode == 3
    assert "can't be replaced together in one step" in load.stderr
    assert digests(tmp_path) == before


def _python313() -> str | None:
    """A Python 3.13 that runs (``PERSISTDICT_PYTHON313``, PATH, or pyenv's), if any."""
    candidates = [os.environ.get("PERSISTDICT_PYTHON313"), shutil.which("python3.13")]
    candidates += map(str, sorted(Path.home().glob(".pyenv/versions/3.13*/bin/python3.13")))
    for candidate in filter(None, candidates):
        ok = subprocess.run([candidate, "-c", "import dbm.sqlite3"], capture_output=True)
        if ok.returncode == 0:
            return candidate
    return None


def test_a_one_file_dbm_killed_mid_merge_is_left_whole(tmp_path: Path, src: Path) -> None:
    # Python 3.13's default dbm (dbm.sqlite3) keeps one file: it is merged into a copy that
    # replaces it in one rename. Run with that Python, the core being stdlib-only.
    py313 = _python313()
    if py313 is None:
        pytest.skip("needs Python 3.13 for a one-file dbm")
    env = {
        **os.environ,
        "PYTHONPATH": f"{Path(persistdict.__file__).parent.parent}:{HERE.parent.parent}",
    }
    dst = tmp_path / "out"
    dump = (
        "import json, sys, persistdict\n"
        "with persistdict.open(sys.argv[1], 'r', backend='dbm') as d:\n"
        "    print(json.dumps(dict(d.items()), sort_keys=True))\n"
    )

    def run(*args: str | Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [py313, *map(str, args)],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    assert (
        run("-m", "persistdict", "load", dst, "--backend", "dbm", stdin=json.dumps(OLD)).returncode
        == 0
    )
    assert (
        run("-c", "import dbm, sys; print(dbm.whichdb(sys.argv[1]))", dst).stdout.strip()
        == "dbm.sqlite3"
    )
    paused = subprocess.Popen(
        [py313, HERE / "paused_cli.py", "convert", src, dst, "--merge", "--backend", "dbm", "-q"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert paused.stdout is not None
    assert paused.stdout.readline().startswith("batch ")
    paused.kill()
    paused.communicate(timeout=60)
    assert json.loads(run("-c", dump, dst).stdout) == OLD
    assert scratches(dst), "the killed run's scratch should be there until the next run"
    assert (
        run(
            "-m", "persistdict", "convert", src, dst, "--merge", "--backend", "dbm", "-q"
        ).returncode
        == 0
    )
    assert json.loads(run("-c", dump, dst).stdout) == {**OLD, **SOURCE}
    assert scratches(dst) == []
