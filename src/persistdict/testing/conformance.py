"""The conformance suite every backend passes.

Subclass it once per backend in a class whose name starts with ``Test`` and define
[`MappingConformance.open_dict`][persistdict.testing.MappingConformance.open_dict]; capability
flags (class attributes such as ``persistent = False``) switch off what a backend cannot do: the
tests they rule out are not collected for that class::

    class TestSqlite(MappingConformance):
        def open_dict(self, folder, **options):
            return persistdict.open(folder / "d.db", **options)

The expectations are those of ``dict`` (CPython's ``mapping_tests`` are the bar), plus what
persistence adds: data survives reopening, bad input changes nothing, closed dicts refuse use.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, ItemsView, Iterator, KeysView, Mapping, ValuesView
from pathlib import Path
from typing import Any, ClassVar

import pytest

import persistdict
from persistdict import ClosedError, PersistDict, ReadOnlyError
from persistdict.testing.dict_protocol import DictProtocol, KeysOnly, _collected_if

__all__ = ["MappingConformance"]


def _open_fds() -> dict[int, str] | None:
    """This process's open file descriptors and what they point to; ``None`` without /proc."""
    folder = "/proc/self/fd"
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    fds = {}
    for name in names:
        try:
            fds[int(name)] = os.readlink(f"{folder}/{name}")
        except OSError:  # closed meanwhile (the listing's own descriptor)
            continue
    return fds


class _Unsavable:
    """A value no format can save: JSON doesn't know it, pickle is refused."""

    def __reduce__(self) -> Any:
        raise TypeError("_Unsavable can't be saved")


# What some tests need; a subclass whose flags say otherwise does not collect them.
_keeps_data = _collected_if(lambda cls: cls.persistent, "this backend keeps nothing after close()")
_mutable_values = _collected_if(lambda cls: not cls.str_values_only, "values are plain strings")
_writeback_applies = _collected_if(
    lambda cls: not cls.str_values_only and not cls.live_objects,
    "writeback applies to per-key backends with mutable values",
)


class MappingConformance(DictProtocol):
    """The shared suite. Not collected by itself (its name does not start with ``Test``).

    It includes ``persistdict.testing.dict_protocol.DictProtocol``, CPython's
    ``mapping_tests`` expectations, and its flags ``live_objects`` (reads return the stored
    objects themselves, as snapshot files do) and ``str_values_only`` (csv).
    """

    #: Data outlives close() and can be reopened.
    persistent: ClassVar[bool] = True
    #: The target is a file: flags "r"/"w" on a missing one raise FileNotFoundError.
    file_based: ClassVar[bool] = True
    #: Keys and text values may hold NUL characters (not in a CSV text file).
    nul_in_text: ClassVar[bool] = True
    #: The longest key, in UTF-8 bytes, the tests use (LMDB's default limit is 511).
    max_key_bytes: ClassVar[int] = 500

    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        """Open this backend's dict stored under ``folder``; same folder, same dict."""
        raise NotImplementedError

    @pytest.fixture(autouse=True)
    def _no_fd_leak(self) -> Iterator[None]:
        """Fail a test that leaves a file descriptor open once its dicts are closed or gone."""
        before = _open_fds()
        yield
        if before is None:
            return
        gc.collect()  # an unclosed dict is closed when collected
        after = _open_fds()
        assert after is not None
        leaked = {fd: target for fd, target in after.items() if before.get(fd) != target}
        assert not leaked, f"file descriptors left open: {leaked}"

    def value(self, i: int) -> Any:
        """A storable value, distinct for each ``i``."""
        if self.str_values_only:
            return f"value {i} ✓"
        return {"index": i, "tags": ["a", i], "ok": True, "name": f"n{i} ✓"}

    # Helpers.

    def filled(self, folder: Path, n: int = 3, **options: Any) -> PersistDict:
        d = self.open_dict(folder, **options)
        d.update({f"k{i}": self.value(i) for i in range(n)})
        return d

    def reopened(self, folder: Path, d: PersistDict, **options: Any) -> PersistDict:
        d.close()
        return self.open_dict(folder, **options)

    # Empty dict.

    def test_empty(self, tmp_path: Path) -> None:
        with self.open_dict(tmp_path) as d:
            assert len(d) == 0
            assert list(d) == []
            assert "missing" not in d
            assert d.get("missing") is None
            assert d.get("missing", 5) == 5
            assert d == {}
            assert not d
            with pytest.raises(KeyError) as info:
                d["missing"]
            assert info.value.args == ("missing",)

    # Basic item access.

    def test_set_get_overwrite_delete(self, tmp_path: Path) -> None:
        with self.open_dict(tmp_path) as d:
            d["a"] = self.value(1)
            assert d["a"] == self.value(1)
            d["a"] = self.value(2)
            assert d["a"] == self.value(2)
            assert len(d) == 1
            assert "a" in d
            del d["a"]
            assert "a" not in d
            assert len(d) == 0
            with pytest.raises(KeyError):
                del d["a"]

    def test_keys_of_every_shape(self, tmp_path: Path) -> None:
        keys = [
            "",
            " ",
            "ünïcødé ✓",
            "with\nnewline",
            "a,b;\"c'",
            "k" * self.max_key_bytes,
            "0",
            "None",
        ]
        with self.open_dict(tmp_path) as d:
            for i, key in enumerate(keys):
                d[key] = self.value(i)
            assert sorted(d) == sorted(keys)
            for i, key in enumerate(keys):
                assert d[key] == self.value(i)
        if self.persistent:
            with self.open_dict(tmp_path) as d:
                assert {k: d[k] for k in keys} == {k: self.value(i) for i, k in enumerate(keys)}

    def test_views(self, tmp_path: Path) -> None:
        with self.filled(tmp_path, 3) as d:
            expected = {f"k{i}": self.value(i) for i in range(3)}
            assert isinstance(d.keys(), KeysView)
            assert isinstance(d.values(), ValuesView)
            assert isinstance(d.items(), ItemsView)
            assert sorted(d.keys()) == sorted(expected)
            assert len(d.keys()) == len(d.values()) == len(d.items()) == 3
            assert sorted(map(repr, d.values())) == sorted(map(repr, expected.values()))
            assert dict(d.items()) == expected
            assert ("k1", self.value(1)) in d.items()
            assert ("k1", self.value(2)) not in d.items()
            assert d.keys() & {"k0", "zz"} == {"k0"}
            assert dict(d) == expected

    def test_many_keys_stream_once_each(self, tmp_path: Path) -> None:
        n = 2600  # more than one page and one lock chunk
        with self.open_dict(tmp_path) as d:
            d.update((f"key{i:05d}", self.value(i)) for i in range(n))
            keys = list(d)
            assert len(keys) == len(set(keys)) == n == len(d)
            items = dict(d.items())
            assert items[f"key{n - 1:05d}"] == self.value(n - 1)
            assert sum(1 for _ in d.values()) == n

    # Methods with defaults and atomic read-modify-write.

    def test_get_setdefault_pop(self, tmp_path: Path) -> None:
        with self.open_dict(tmp_path) as d:
            assert d.setdefault("a", self.value(1)) == self.value(1)
            assert d.setdefault("a", self.value(2)) == self.value(1)
            assert d.pop("a") == self.value(1)
            assert "a" not in d
            assert d.pop("a", None) is None
            assert d.pop("a", self.value(3)) == self.value(3)
            with pytest.raises(KeyError):
                d.pop("a")

    def test_popitem_until_empty(self, tmp_path: Path) -> None:
        with self.filled(tmp_path, 3) as d:
            seen = {}
            for _ in range(3):
                key, value = d.popitem()
                seen[key] = value
            assert seen == {f"k{i}": self.value(i) for i in range(3)}
            assert len(d) == 0
            with pytest.raises(KeyError):
                d.popitem()

    def test_update_forms(self, tmp_path: Path) -> None:
        with self.open_dict(tmp_path) as d:
            d.update({"a": self.value(1)})
            d.update([("b", self.value(2))])
            d.update(KeysOnly({"c": self.value(3)}))
            d.update(e=self.value(5))
            d.update({"a": self.value(0)}, f=self.value(6))
            d.update()
            assert dict(d) == {
                "a": self.value(0),
                "b": self.value(2),
                "c": self.value(3),
                "e": self.value(5),
                "f": self.value(6),
            }
            with pytest.raises(ValueError, match=r"element #1 must be a \(key, value\) pair"):
                d.update([("x", self.value(1)), "not a pair of two"])
            with pytest.raises(TypeError, match=r"element #0 must be a \(key, value\) pair"):
                d.update([5])
            assert "x" not in d
            with pytest.raises(TypeError):
                d.update(5)

    def test_update_is_all_or_nothing_when_its_input_fails(self, tmp_path: Path) -> None:
        def pairs() -> Iterator[tuple[str, Any]]:
            yield "x", self.value(1)
            yield "k0", self.value(2)
            raise OSError("the source went away")

        with self.filled(tmp_path, 1) as d:
            with pytest.raises(OSError, match="went away"):
                d.update(pairs())
            assert dict(d) == {"k0": self.value(0)}
        if self.persistent:
            with self.open_dict(tmp_path) as d:
                assert dict(d) == {"k0": self.value(0)}

    def test_clear(self, tmp_path: Path) -> None:
        with self.filled(tmp_path, 5) as d:
            d.clear()
            assert len(d) == 0
            assert list(d) == []
        if self.persistent:
            with self.open_dict(tmp_path) as d:
                assert dict(d) == {}

    def test_equality_and_merge_operators(self, tmp_path: Path) -> None:
        with self.filled(tmp_path, 2) as d:
            plain = {"k0": self.value(0), "k1": self.value(1)}
            assert d == plain
            assert plain == d
            assert d != {"k0": self.value(0)}
            not_a_mapping: Any = [("k0", self.value(0))]
            assert d != not_a_mapping
            merged = d | {"x": self.value(9)}
            assert isinstance(merged, dict)
            assert merged == {**plain, "x": self.value(9)}
            assert {"k0": self.value(5), "y": self.value(8)} | d == {**plain, "y": self.value(8)}
            same = d
            d |= {"z": self.value(7)}
            assert d is same
            assert d["z"] == self.value(7)

    # Bad input changes nothing.

    @pytest.mark.parametrize("key", [1, 1.5, b"bytes", None, ("t",)])
    def test_non_str_keys_are_refused(self, tmp_path: Path, key: Any) -> None:
        with self.filled(tmp_path, 1) as d:
            before = dict(d)
            with pytest.raises(TypeError, match=f"keys must be str, not {type(key).__name__}"):
                d[key] = self.value(1)
            with pytest.raises(TypeError, match="keys must be str"):
                d[key]
            with pytest.raises(TypeError, match="keys must be str"):
                del d[key]
            with pytest.raises(TypeError, match="keys must be str"):
                d.update({key: self.value(1)})
            assert key not in d
            assert dict(d) == before

    def unstorable(self) -> Any:
        """A value this backend must refuse at assignment."""
        return 5 if self.str_values_only else {"a set": {1, 2}}

    def test_unstorable_value_changes_nothing(self, tmp_path: Path) -> None:
        with self.filled(tmp_path, 2) as d:
            with pytest.raises((TypeError, ValueError), match="k0"):
                d["k0"] = self.unstorable()
            assert d["k0"] == self.value(0)
            with pytest.raises((TypeError, ValueError)):
                d.update({"new": self.value(5), "k1": self.unstorable()})
            assert "new" not in d
            assert d["k1"] == self.value(1)
        if self.persistent:
            with self.open_dict(tmp_path) as d:
                assert dict(d) == {"k0": self.value(0), "k1": self.value(1)}

    def test_lone_surrogates_are_stored_or_refused_cleanly(self, tmp_path: Path) -> None:
        # "\ud800" is a valid Python str that UTF-8 can't encode. Either it round-trips or the
        # assignment raises ValueError; either way the dict must still flush and reopen.
        bad_value = "bad \ud800" if self.str_values_only else {"text": "bad \udfff"}
        with self.filled(tmp_path, 1) as d:
            assert "key \ud800" not in d
            assert d.get("key \ud800") is None
            for key, value in (("key \ud800", self.value(1)), ("k1", bad_value)):
                try:
                    d[key] = value
                except ValueError:
                    assert key not in d
                else:
                    assert d[key] == value
            d.flush()
            expected = dict(d)
        if self.persistent:
            with self.open_dict(tmp_path) as d:
                assert dict(d) == expected
                assert d["k0"] == self.value(0)

    def edge_items(self) -> dict[str, Any]:
        """Keys and values at the edges of what storage engines and file formats hold."""
        long_text = "x" * 200_000  # beyond the csv module's default field limit (131072)
        items: dict[str, Any] = {
            "long value": long_text,
            "k" * 200_000: "a long key",
            'quote"d': 'with "quotes", commas\r\nand CRLF',
            "\ufeffbom": "\u2028line separator\u2029",
            "\t tab \x0b\x0c": "\x1b[0m escape",
            "big": "y" * 3_000_000,
        }
        if not self.str_values_only:
            items["nested"] = {"k" * 150_000: ["z" * 150_000, 1e308, -0.0, 2**63, "\u0001"]}
        if self.nul_in_text:
            items["nul"] = {"text": "a\x00b"} if not self.str_values_only else "a\x00b"
        return items

    def test_nothing_is_written_that_cannot_be_read_back(self, tmp_path: Path) -> None:
        # Each edge item is either refused at assignment (TypeError/ValueError naming the key,
        # nothing changed) or read back equal after a reopen: never saved and then unreadable.
        stored: dict[str, Any] = {}
        with self.filled(tmp_path, 1) as d:
            for key, value in self.edge_items().items():
                try:
                    d[key] = value
                except (TypeError, ValueError) as exc:
                    refusal = str(exc)
                    assert key[:20] in refusal, refusal
                    assert key not in d
                else:
                    assert d[key] == value
                    stored[key] = value
                d.flush()
        if self.persistent:
            with self.open_dict(tmp_path, flag="r") as d:
                assert dict(d) == {"k0": self.value(0), **stored}

    # Persistence and flags.

    @_keeps_data
    def test_values_survive_reopen(self, tmp_path: Path) -> None:
        with self.filled(tmp_path, 3) as d:
            del d["k1"]
        with self.open_dict(tmp_path, flag="r") as d:
            assert dict(d) == {"k0": self.value(0), "k2": self.value(2)}

    @_keeps_data
    def test_flag_n_starts_empty(self, tmp_path: Path) -> None:
        self.filled(tmp_path, 3).close()
        with self.open_dict(tmp_path, flag="n") as d:
            assert len(d) == 0
        with self.open_dict(tmp_path) as d:
            assert len(d) == 0

    @_collected_if(lambda cls: cls.file_based, "not stored in a file")
    def test_missing_target_with_flag_r_or_w(self, tmp_path: Path) -> None:
        for flag in ("r", "w"):
            with pytest.raises(FileNotFoundError, match="flag='c'"):
                self.open_dict(tmp_path, flag=flag)

    @_keeps_data
    def test_read_only_refuses_writes_and_keeps_data(self, tmp_path: Path) -> None:
        self.filled(tmp_path, 2).close()
        with self.open_dict(tmp_path, flag="r") as d:
            writes: list[Callable[[], object]] = [
                lambda: d.__setitem__("k0", self.value(9)),
                lambda: d.__delitem__("k0"),
                lambda: d.update({"x": self.value(1)}),
                d.clear,
                lambda: d.pop("k0"),
                d.popitem,
                lambda: d.setdefault("y", self.value(1)),
            ]
            for write in writes:
                with pytest.raises(ReadOnlyError, match="read-only"):
                    write()
            assert dict(d) == {"k0": self.value(0), "k1": self.value(1)}
        with self.open_dict(tmp_path) as d:
            assert dict(d) == {"k0": self.value(0), "k1": self.value(1)}

    # Lifecycle.

    def test_close_is_idempotent_and_use_after_close_fails(self, tmp_path: Path) -> None:
        d = self.filled(tmp_path, 1)
        d.flush()
        d.sync()
        d.close()
        d.close()
        assert d.closed
        assert "closed" in repr(d)
        for use in (
            lambda: d["k0"],
            lambda: d.__setitem__("a", self.value(1)),
            lambda: len(d),
            lambda: list(d),
            d.flush,
        ):
            with pytest.raises(ClosedError, match="closed"):
                use()

    def test_repr_names_the_backend(self, tmp_path: Path) -> None:
        with self.open_dict(tmp_path) as d:
            assert d.backend.name in repr(d)

    # Transactions.

    def test_transaction_commits(self, tmp_path: Path) -> None:
        with self.filled(tmp_path, 2) as d:
            with d.transaction():
                d["new"] = self.value(5)
                del d["k0"]
            assert dict(d) == {"k1": self.value(1), "new": self.value(5)}
        if self.persistent:
            with self.open_dict(tmp_path) as d:
                assert dict(d) == {"k1": self.value(1), "new": self.value(5)}

    def test_transaction_rolls_back_on_error(self, tmp_path: Path) -> None:
        with self.filled(tmp_path, 3) as d:
            before = dict(d)
            with pytest.raises(RuntimeError, match="boom"), d.transaction():
                d["new"] = self.value(5)
                d["k0"] = self.value(9)
                del d["k1"]
                d.update({"u": self.value(7)})
                d.pop("k2")
                raise RuntimeError("boom")
            assert dict(d) == before
        if self.persistent:
            with self.open_dict(tmp_path) as d:
                assert dict(d) == before

    def test_nested_transaction_rolls_back_alone(self, tmp_path: Path) -> None:
        with self.filled(tmp_path, 1) as d:
            with d.transaction():
                d["outer"] = self.value(1)
                with pytest.raises(KeyError), d.transaction():
                    d["inner"] = self.value(2)
                    d["k0"] = self.value(3)
                    raise KeyError("inner fails")
                d["after"] = self.value(4)
            assert dict(d) == {
                "k0": self.value(0),
                "outer": self.value(1),
                "after": self.value(4),
            }

    @_collected_if(
        lambda cls: cls.live_objects and not cls.str_values_only,
        "reads return copies, or values are immutable strings",
    )
    def test_rollback_keeps_the_objects_callers_hold(self, tmp_path: Path) -> None:
        # A rolled-back block, or one whose save fails, restores the contents of the very
        # objects callers hold: later changes through them are still saved.
        with self.open_dict(tmp_path) as d:
            d["settings"] = {"root": "/srv", "paths": ["a"], "nested": {"x": 1}}
            d["other"] = [1, 2]
            settings, other = d["settings"], d["other"]
            paths, nested = settings["paths"], settings["nested"]

            def change_everything() -> None:
                settings["root"] = "/changed"
                settings["new"] = True
                paths.append("b")
                nested.clear()
                settings["paths"] = ["replaced"]
                d["other"] = "replaced"
                d["added"] = {"a": 1}
                del d["settings"]

            with pytest.raises(RuntimeError, match="boom"), d.transaction():
                change_everything()
                raise RuntimeError("boom")
            with (
                pytest.raises(TypeError, match=r"can.t be saved|not JSON serializable"),
                d.transaction(),
            ):
                change_everything()
                d["added"]["bad"] = _Unsavable()  # the save at the end of the block fails
            for _ in range(2):
                assert d["settings"] is settings
                assert settings["paths"] is paths
                assert settings["nested"] is nested
                assert d["other"] is other
                assert dict(d) == {
                    "settings": {"root": "/srv", "paths": ["a"], "nested": {"x": 1}},
                    "other": [1, 2],
                }
                with d.transaction(), d.transaction():  # nested blocks that commit
                    pass
            settings["root"] = "/after"
            paths.append("kept")
        with self.open_dict(tmp_path) as d:
            assert d["settings"] == {"root": "/after", "paths": ["a", "kept"], "nested": {"x": 1}}

    def test_transaction_read_modify_write(self, tmp_path: Path) -> None:
        with self.open_dict(tmp_path) as d:
            for _ in range(5):
                with d.transaction():
                    count = int(d.get("n", "0") if self.str_values_only else d.get("n", 0))
                    d["n"] = str(count + 1) if self.str_values_only else count + 1
            assert d["n"] in (5, "5")

    # Copies versus live objects.

    @_mutable_values
    def test_nested_change_semantics(self, tmp_path: Path) -> None:
        with self.open_dict(tmp_path) as d:
            d["cfg"] = {"root": "/srv", "list": [1]}
            d["cfg"]["root"] = "/changed"
            d["cfg"]["list"].append(2)
            expected = (
                {"root": "/changed", "list": [1, 2]}
                if self.live_objects
                else {"root": "/srv", "list": [1]}
            )
            assert d["cfg"] == expected
        if self.persistent:
            with self.open_dict(tmp_path) as d:
                assert d["cfg"] == expected

    @_mutable_values
    def test_writeback_saves_nested_changes(self, tmp_path: Path) -> None:
        with self.open_dict(tmp_path, writeback=True) as d:
            d["cfg"] = {"root": "/srv"}
            d["cfg"]["root"] = "/changed"
            d["other"] = {"n": 1}
            d.flush()
            assert d["cfg"] == {"root": "/changed"}
            d["cfg"]["extra"] = True  # after a flush: saved by close()
        if self.persistent:
            with self.open_dict(tmp_path) as d:
                assert d["cfg"] == {"root": "/changed", "extra": True}
                assert d["other"] == {"n": 1}

    @_writeback_applies
    def test_writeback_saves_changes_through_every_access_path(self, tmp_path: Path) -> None:
        # shelve's promise: any value read is written back if it changed, whatever ran between
        # reading and changing it (here: pop, popitem, setdefault, transactions committed and
        # rolled back, update, del, reads).

        def log(i: int) -> dict[str, Any]:
            return {"n": i, "log": []}

        with self.open_dict(tmp_path, writeback=True) as d:
            d.update({f"k{i}": log(i) for i in range(6)})
            d.update({"victim": 1, "gone": 2, "spare": 3})
            held = {
                "k0": d["k0"],
                "k1": d.get("k1"),
                "k2": d.setdefault("k2", log(99)),
                "new": d.setdefault("new", log(-1)),
                "k3": next(v for k, v in d.items() if k == "k3"),
                "k4": next(v for v in d.values() if isinstance(v, dict) and v["n"] == 4),
            }
            held["k5"] = d["k5"]
            d.pop("victim")
            popped, _ = d.popitem()
            with d.transaction():
                d["committed"] = 1
            with pytest.raises(RuntimeError), d.transaction():
                d["k5"] = log(55)  # replaced, then rolled back: the held object stays
                d["rolled back"] = 1
                raise RuntimeError
            assert d["k5"] is held["k5"]
            d.update({"updated": 1})
            del d["gone" if popped != "gone" else "spare"]
            assert d.pop("absent", None) is None
            assert "committed" in d
            assert len(d) > 0
            assert sorted(d) == sorted(set(d))
            for name, value in held.items():
                value["log"].append(f"changed via {name}")
            held.pop(popped, None)
            d.flush()  # writes back and empties the cache: what follows reads the storage
            for name in held:
                assert d[name]["log"] == [f"changed via {name}"], name
        if self.persistent:
            with self.open_dict(tmp_path) as d:
                for name in held:
                    assert d[name]["log"] == [f"changed via {name}"], name
                assert "rolled back" not in d
                assert d["committed"] == 1

    @_writeback_applies
    def test_writeback_never_brings_back_what_was_deleted_or_replaced(self, tmp_path: Path) -> None:
        with self.open_dict(tmp_path, writeback=True) as d:
            d.update({"a": [1], "b": [2], "c": [3]})
            a, b, c = d["a"], d["b"], d["c"]
            d["b"] = [20]
            del d["c"]
            d.flush()
            b.append("stale")
            c.append("stale")
            a.append("after flush")  # read before flush(): detached by it, as in shelve
            assert d["a"] == [1]
            d["a"].append("read again")
            kept = d["a"]
            d.clear()
            kept.append("after clear")
            d.flush()
            assert dict(d) == {}
        if self.persistent:
            with self.open_dict(tmp_path) as d:
                assert dict(d) == {}

    def test_mapping_abc(self, tmp_path: Path) -> None:
        with self.open_dict(tmp_path) as d:
            assert isinstance(d, Mapping)
            assert isinstance(d, persistdict.PersistDict)
