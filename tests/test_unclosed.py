"""Dicts dropped without close(): closed when collected, unless they hold unsaved writes.

An unclosed dict behaves like an unclosed file: when it is garbage collected it warns with
ResourceWarning and closes, which saves it and releases its file descriptors and locks. One
that may hold writes not yet in storage (a snapshot file changed since its last save, a
``commit_every`` batch, a writeback cache) is kept alive until it is flushed, closed, or the
interpreter exits and saves it (tests/concurrency/test_exit.py).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

import persistdict
from persistdict import lifecycle
from tests.helpers import run_pytest_on, subprocess_env

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _collected(ref: weakref.ref[persistdict.PersistDict]) -> bool:
    """Whether the dict was collected and so closed (pytest.warns keeps the warning's source,
    the dict, alive afterwards: closed is what counts)."""
    gc.collect()
    d = ref()
    return d is None or d.closed


def test_unclosed_read_only_dicts_release_their_fds_when_collected(tmp_path: Path) -> None:
    target = tmp_path / "data.db"
    with persistdict.open(target) as d:
        d["a"] = 1
    before, registered = _fds(), len(lifecycle._open_dicts)
    warning = r"unclosed <PersistDict sqlite .*data\.db"
    with pytest.warns(ResourceWarning, match=warning):  # noqa: PT031 - warned when collected
        for _ in range(200):
            reader = persistdict.open(target, "r")
            assert reader["a"] == 1
        del reader
        gc.collect()
    assert _fds() - before <= 2  # was 400: two per connection, kept until exit
    assert len(lifecycle._open_dicts) == registered


def test_a_clean_unclosed_writer_is_closed_when_collected(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    d = persistdict.open(target)
    d["cfg"] = {"root": "/srv"}
    d.flush()
    d["cfg"]["root"] = "/data"  # a nested change after the flush: saved when collected
    ref = weakref.ref(d)
    with pytest.warns(ResourceWarning, match="unclosed"):  # noqa: PT031 - warned when collected
        del d
        assert _collected(ref)
    assert json.loads(target.read_text()) == {"cfg": {"root": "/data"}}
    with persistdict.open(target, timeout=0) as again:  # the writer lock was released
        assert again["cfg"] == {"root": "/data"}


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("state.json", {}),
        ("batch.db", {"commit_every": 100}),
        ("shelf", {"backend": "dbm"}),
        ("cache.db", {"writeback": True}),
    ],
)
def test_a_dict_with_unsaved_writes_lives_until_flushed(
    tmp_path: Path, name: str, options: dict[str, object]
) -> None:
    d = persistdict.open(tmp_path / name, **options)
    d["n"] = {"hits": 1}
    assert d["n"] == {"hits": 1}
    ref = weakref.ref(d)
    del d
    assert not _collected(ref)  # held: a write may still be only in this process
    held = ref()
    assert held is not None
    held.flush()
    with pytest.warns(ResourceWarning):  # noqa: PT031 - warned when collected
        del held
        assert _collected(ref)
    with persistdict.open(tmp_path / name, "r", **options) as d:
        assert d["n"] == {"hits": 1}


def test_writes_committed_at_once_do_not_keep_a_dict_alive(tmp_path: Path) -> None:
    d = persistdict.open(tmp_path / "data.db")
    d["a"] = [1]
    with d.transaction():
        d["b"] = 2
    ref = weakref.ref(d)
    with pytest.warns(ResourceWarning):  # noqa: PT031 - warned when collected
        del d
        assert _collected(ref)
    with persistdict.open(tmp_path / "data.db", "r") as d:
        assert dict(d) == {"a": [1], "b": 2}


_LEAKY_SUITE = """
from persistdict.testing import MappingConformance
import persistdict

kept = []

class TestLeaky(MappingConformance):
    def open_dict(self, folder, **options):
        kept.append(open(folder / "forgotten", "w"))  # a backend that leaks a descriptor
        return persistdict.open("memory://", **options)
"""


def test_the_conformance_suite_catches_a_leaked_descriptor(tmp_path: Path) -> None:
    # Negative control for the fd-leak check every conformance test runs under.
    done = run_pytest_on(tmp_path / "test_leaky.py", _LEAKY_SUITE, "-k", "test_empty")
    assert done.returncode == 1, done.stdout
    assert "file descriptors left open" in done.stdout
    assert "forgotten" in done.stdout


def test_an_unclosed_dict_is_saved_even_where_warnings_are_errors(tmp_path: Path) -> None:
    script = (
        "import sys, persistdict\n"
        "d = persistdict.open(sys.argv[1])\n"
        "d['a'] = {'n': 1}\n"
        "d.flush()\n"
        "d['a']['n'] = 2  # a nested change: the dict is not held for it\n"
        "del d  # collected: the warning is an error, the close still happens\n"
        "print('after', flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", "-c", script, str(tmp_path / "s.json")],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "after\n"), done.stderr
    assert "ResourceWarning: unclosed <PersistDict json" in done.stderr
    assert json.loads((tmp_path / "s.json").read_text()) == {"a": {"n": 2}}
