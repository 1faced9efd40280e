"""Dicts left open are flushed and closed when the interpreter exits, quietly."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import persistdict
from tests.concurrency.harness import integrity
from tests.helpers import subprocess_env


def _run(script: str, folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), str(folder)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dicts_never_closed_are_saved_at_exit(tmp_path: Path) -> None:
    done = _run(
        """
        import sys, threading, persistdict
        folder = sys.argv[1]
        state = persistdict.open(f"{folder}/state.json")
        state["cfg"] = {"root": "/srv"}
        state["cfg"]["root"] = "/data"            # a nested change, never flushed
        rows = persistdict.open(f"{folder}/rows.csv")
        rows["a"] = "1"
        batch = persistdict.open(f"{folder}/data.db", commit_every=1000)
        batch.update({f"k{i}": i for i in range(10)})
        batch["last"] = "pending"                  # inside an uncommitted batch
        cached = persistdict.open(f"{folder}/cache.db", writeback=True)
        cached["n"] = {"hits": 1}
        cached["n"]["hits"] += 1                   # only in the writeback cache
        shelf = persistdict.open(f"{folder}/shelf", backend="dbm")
        shelf["s"] = [1, 2]
        dropped = persistdict.open(f"{folder}/dropped.json")
        dropped["kept"] = True
        del dropped                                # no reference left, never closed
        worker = threading.Thread(target=lambda: state.__setitem__("thread", 1))
        worker.start(); worker.join()
        """,
        tmp_path,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved == {"cfg": {"root": "/data"}, "thread": 1}
    assert json.loads((tmp_path / "dropped.json").read_text()) == {"kept": True}
    assert integrity(tmp_path / "data.db") == ["ok"]
    with persistdict.open(tmp_path / "data.db", "r") as d:
        assert d["last"] == "pending"
        assert len(d) == 11
    with persistdict.open(tmp_path / "cache.db", "r") as d:
        assert d["n"] == {"hits": 2}
    with persistdict.open(tmp_path / "rows.csv", "r") as d:
        assert dict(d) == {"a": "1"}
    with persistdict.open(tmp_path / "shelf", "r", backend="dbm") as d:
        assert d["s"] == [1, 2]


def test_a_dict_that_cannot_be_saved_at_exit_says_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text('{"a": {"x": 1}}\n')
    before = (tmp_path / "state.json").read_bytes()
    done = _run(
        """
        import sys, persistdict
        d = persistdict.open(sys.argv[1] + "/state.json")
        d["a"]["x"] = object()                     # unstorable, slipped in through nesting
        other = persistdict.open(sys.argv[1] + "/other.json")
        other["saved"] = "anyway"                  # one failure does not stop the others
        """,
        tmp_path,
    )
    assert done.returncode == 0
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("persistdict: could not save <PersistDict json ")
    assert "state.json" in lines[0]
    assert "at exit:" in lines[0]
    assert (tmp_path / "state.json").read_bytes() == before
    assert json.loads((tmp_path / "other.json").read_text()) == {"saved": "anyway"}


def test_a_daemon_thread_holding_a_dict_does_not_hang_exit(tmp_path: Path) -> None:
    done = _run(
        """
        import sys, threading, time, persistdict
        folder = sys.argv[1]
        stuck = persistdict.open(f"{folder}/data.db", timeout=0.5)
        inside = threading.Event()

        def work():
            with stuck.transaction():
                stuck["x"] = 1
                inside.set()
                time.sleep(600)                    # still in the block when main exits

        threading.Thread(target=work, daemon=True).start()
        inside.wait()
        other = persistdict.open(f"{folder}/other.json")
        other["saved"] = True
        """,
        tmp_path,
    )
    assert done.returncode == 0
    assert done.stderr.splitlines() == [
        f"persistdict: could not save <PersistDict sqlite {str(tmp_path / 'data.db')!r} "
        "table 'items'> at exit: another thread kept using it for 0.5s"
    ]
    assert json.loads((tmp_path / "other.json").read_text()) == {"saved": True}
    with persistdict.open(tmp_path / "data.db", "r") as d:
        assert "x" not in d  # the unfinished block was not committed
    assert integrity(tmp_path / "data.db") == ["ok"]


@pytest.mark.parametrize("backend", ["json", "csv", "pickle", "dbm"])
def test_the_exit_wait_is_the_timeout_the_file_was_opened_with(
    tmp_path: Path, backend: str
) -> None:
    name = f"data.{backend}"
    # Every backend that takes timeout= waits that long for a thread still in the dict at
    # exit, not the default 10 s: the snapshot files and dbm too, not only sqlite.
    start = time.monotonic()
    done = _run(
        f"""
        import sys, threading, time, persistdict
        folder = sys.argv[1]
        stuck = persistdict.open(f"{{folder}}/{name}", timeout=0.5, backend={backend!r})
        inside = threading.Event()

        def work():
            with stuck.transaction():
                stuck["x"] = "1"
                inside.set()
                time.sleep(600)

        threading.Thread(target=work, daemon=True).start()
        inside.wait()
        """,
        tmp_path,
    )
    seconds = time.monotonic() - start
    assert done.returncode == 0
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("persistdict: could not save <PersistDict "), done.stderr
    assert lines[0].endswith("at exit: another thread kept using it for 0.5s"), done.stderr
    assert seconds < 8  # not the default 10 s
