"""Snapshot dicts (json, csv, pickle) read without the dict's lock, at a plain dict's speed
(persistdict.snapshot_reads): every promise of the locked reads still holds."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict import ClosedError, PersistDict

FORMATS = ["json", "csv", "pickle"]


def _open(folder: Path, fmt: str, flag: str = "c", **options: Any) -> PersistDict:
    if fmt == "pickle":
        options["backend"] = "pickle"
    return persistdict.open(folder / f"data.{fmt}", flag, **options)


def _reads(d: PersistDict) -> list[Callable[[], object]]:
    return [
        lambda: d["a"],
        lambda: "a" in d,
        lambda: d.get("a"),
        lambda: len(d),
        lambda: list(d),
        lambda: list(d.keys()),
        lambda: list(d.items()),
        lambda: list(d.values()),
        lambda: ("a", "1") in d.items(),
    ]


def _in_thread(call: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []

    def run() -> None:
        try:
            out.append(call())
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


@pytest.mark.parametrize("fmt", FORMATS)
def test_reads_from_another_thread_wait_for_a_transaction_block(tmp_path: Path, fmt: str) -> None:
    with _open(tmp_path, fmt) as d:
        d["a"] = "1"
        started = []
        with pytest.raises(RuntimeError, match="undo"), d.transaction():
            d["a"] = "2"
            d["b"] = "2"
            started = [_in_thread(read) for read in _reads(d)]
            for thread, _ in started:
                thread.join(0.2)
                assert thread.is_alive(), "a read ran inside another thread's block"
            raise RuntimeError("undo")
        answers = []
        for thread, out in started:
            thread.join(10)
            answers.append(out[0])
        # The block was rolled back: no read saw its writes.
        assert answers == ["1", True, "1", 1, ["a"], ["a"], [("a", "1")], ["1"], True]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_transaction_that_waited_for_another_still_keeps_readers_out(
    tmp_path: Path, fmt: str
) -> None:
    # The second block starts as the first ends: reads must wait for it too, not go back to
    # reading without the lock between the two.
    with _open(tmp_path, fmt) as d:
        d["a"] = "0"
        second_in = threading.Event()
        release = threading.Event()

        def second_block() -> None:
            with d.transaction():
                d["a"] = "2"
                second_in.set()
                release.wait(10)
                raise RuntimeError("roll back")

        with d.transaction():
            d["a"] = "1"
            second, second_out = _in_thread(second_block)
            second.join(0.2)
            assert not second_in.is_set()
        assert second_in.wait(10)
        reader, seen = _in_thread(lambda: d["a"])
        reader.join(0.2)
        assert reader.is_alive(), "a read ran inside the second block"
        release.set()
        second.join(10)
        reader.join(10)
        assert isinstance(second_out[0], RuntimeError)
        assert seen == ["1"]
        assert d["a"] == "1"


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_read_after_close_raises_closed_error(tmp_path: Path, fmt: str) -> None:
    d = _open(tmp_path, fmt)
    d["a"] = "1"
    keys, items, values = d.keys(), d.items(), d.values()
    d.close()
    for read in [*_reads(d), lambda: list(keys), lambda: list(items), lambda: list(values)]:
        with pytest.raises(ClosedError, match="closed"):
            read()


@pytest.mark.parametrize("fmt", FORMATS)
def test_closing_in_another_thread_ends_reads_with_closed_error(tmp_path: Path, fmt: str) -> None:
    d = _open(tmp_path, fmt)
    d["a"] = "1"
    errors: list[BaseException] = []
    go = threading.Event()

    def read() -> None:
        go.set()
        try:
            while True:
                assert d["a"] == "1"
                assert "a" in d
                assert len(d) == 1
        except ClosedError:
            return
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    go.wait(10)
    d.close()
    thread.join(10)
    assert not thread.is_alive()
    assert errors == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_loop_sees_the_keys_of_its_start_whoever_writes_meanwhile(
    tmp_path: Path, fmt: str
) -> None:
    with _open(tmp_path, fmt) as d:
        d.update({f"k{i}": str(i) for i in range(50)})
        seen = []
        for key in d:  # writes in the loop, as dict would refuse
            seen.append(key)
            d[key + "-new"] = "x"
            del d[key]
        assert seen == [f"k{i}" for i in range(50)]
        assert sorted(d) == sorted(f"k{i}-new" for i in range(50))
        items = iter(d.items())
        d.clear()
        assert len(list(items)) == 50
        assert len(d) == 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_threads_iterate_while_another_writes(tmp_path: Path, fmt: str) -> None:
    with _open(tmp_path, fmt) as d:
        d.update({f"fixed{i}": "f" for i in range(100)})
        errors: list[BaseException] = []
        done = threading.Event()

        def iterate() -> None:
            try:
                while not done.is_set():
                    keys = [k for k in d if k.startswith("fixed")]
                    assert len(keys) == 100
                    assert sum(1 for k, v in d.items() if k.startswith("fixed")) == 100
            except BaseException as exc:
                errors.append(exc)

        readers = [threading.Thread(target=iterate) for _ in range(3)]
        for thread in readers:
            thread.start()
        for i in range(3000):
            d[f"new{i % 50}"] = str(i)
            if i % 7 == 0:
                del d[f"new{i % 50}"]
            if i % 500 == 0:
                d.update({f"bulk{i}": "b"})
        done.set()
        for thread in readers:
            thread.join(10)
        assert errors == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_rolled_back_block_leaves_a_loop_begun_before_it_whole(tmp_path: Path, fmt: str) -> None:
    with _open(tmp_path, fmt) as d:
        d.update({"a": "1", "b": "2"})
        loop = iter(d.items())
        iterate = d.__iter__  # taken before the block, called inside it
        with pytest.raises(RuntimeError), d.transaction():
            inner = iterate()
            d["a"] = "changed"
            d["c"] = "3"
            raise RuntimeError
        assert list(loop) == [("a", "1"), ("b", "2")]
        assert list(inner) == ["a", "b"]
        assert dict(d) == {"a": "1", "b": "2"}
        d["c"] = "3"  # and the dict goes on, saved
    with _open(tmp_path, fmt, "r") as d:
        assert dict(d) == {"a": "1", "b": "2", "c": "3"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_reads_see_a_reload_however_it_is_asked_for(tmp_path: Path, fmt: str) -> None:
    with _open(tmp_path, fmt) as writer:
        writer["a"] = "1"
    reader = _open(tmp_path, fmt, "r")
    try:
        assert reader["a"] == "1"
        with _open(tmp_path, fmt) as writer:
            writer["a"] = "2"
            writer["b"] = "2"
        reader.refresh()
        assert (reader["a"], "b" in reader, len(reader), list(reader)) == ("2", True, 2, ["a", "b"])
        with _open(tmp_path, fmt) as writer:
            del writer["b"]
        reader.backend.refresh()  # the backend's own, past the dict
        assert (reader.get("b"), "b" in reader, len(reader), list(reader)) == (
            None,
            False,
            1,
            ["a"],
        )
    finally:
        reader.close()


@pytest.mark.parametrize("fmt", FORMATS)
def test_keys_that_are_not_str_answer_as_before(tmp_path: Path, fmt: str) -> None:
    with _open(tmp_path, fmt) as d:
        d["1"] = "one"
        for key in (1, None, b"1", ("1",)):
            with pytest.raises(TypeError, match=f"keys must be str, not {type(key).__name__}"):
                d[key]
            assert key not in d
            assert d.get(key, "default") == "default"
        for unhashable in ([], {}, {"1"}):
            assert unhashable not in d
            assert d.get(unhashable, "default") == "default"
            assert (unhashable, "one") not in d.items()
        with pytest.raises(KeyError, match="missing"):
            d["missing"]
        assert d.get("missing") is None


def test_a_pickle_file_holds_a_plain_dict(tmp_path: Path) -> None:
    with _open(tmp_path, "pickle") as d:
        d["a"] = [1, 2]
    with open(tmp_path / "data.pickle", "rb") as f:
        loaded = pickle.load(f)
    assert type(loaded) is dict
    assert loaded == {"a": [1, 2]}


def test_a_subclass_that_overrides_reads_keeps_its_own(tmp_path: Path) -> None:
    class Upper(PersistDict):
        def __getitem__(self, key: str) -> Any:
            return super().__getitem__(key).upper()

    backend = persistdict.JsonFileBackend(tmp_path / "upper.json")
    with Upper(backend) as d:
        d["a"] = "x"
        assert d["a"] == "X"
        with d.transaction():
            assert d["a"] == "X"
        assert d["a"] == "X"
