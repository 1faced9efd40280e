"""The conformance suite every backend passes.

Subclass it once per backend in a class whose name starts with ``Test`` and define
[`MappingConformance.open_dict`][persistdict.testing.MappingConformance.open_dict]; capability
flags switch off what a backend cannot do::

    class TestSqlite(MappingConformance):
        def open_dict(self, folder, **options):
            return persistdict.open(folder / "d.db", **options)

The expectations are those of ``dict`` (CPython's ``mapping_tests`` are the bar), plus what
persistence adds: data survives reopening, bad input changes nothing, closed dicts refuse use.
"""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterator, KeysView, Mapping, ValuesView
from pathlib import Path
from typing import Any, ClassVar

import pytest

import persistdict
from persistdict import ClosedError, PersistDict, ReadOnlyError

__all__ = ["MappingConformance"]


class _KeysOnly:
    """A mapping-like object with only ``keys`` and ``__getitem__``, as ``dict.update`` takes."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def keys(self) -> Any:
        return self._data.keys()

    def __getitem__(self, key: str) -> Any:
        return self._data[key]


class MappingConformance:
    """The shared suite. Not collected by itself (its name does not start with ``Test``)."""

    #: Data outlives close() and can be reopened.
    persistent: ClassVar[bool] = True
    #: Reads return the stored objects themselves (snapshot files), not copies.
    live_objects: ClassVar[bool] = False
    #: Only ``str`` values can be stored (csv).
    str_values_only: ClassVar[bool] = False
    #: The target is a file: flags "r"/"w" on a missing one raise FileNotFoundError.
    file_based: ClassVar[bool] = True
    #: Keys and text values may hold NUL characters (not in a CSV text file).
    nul_in_text: ClassVar[bool] = True
    #: The longest key, in UTF-8 bytes, the tests use (LMDB's default limit is 511).
    max_key_bytes: ClassVar[int] = 500

    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        """Open this backend's dict stored under ``folder``; same folder, same dict."""
        raise NotImplementedError

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
            d.update(_KeysOnly({"c": self.value(3)}))
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
            with pytest.raises(TypeError, match="pair"):
                d.update([("x", self.value(1)), "not a pair of two"])
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

    # Persistence and flags.

    def test_values_survive_reopen(self, tmp_path: Path) -> None:
        if not self.persistent:
            pytest.skip("this backend keeps nothing after close()")
        with self.filled(tmp_path, 3) as d:
            del d["k1"]
        with self.open_dict(tmp_path, flag="r") as d:
            assert dict(d) == {"k0": self.value(0), "k2": self.value(2)}

    def test_flag_n_starts_empty(self, tmp_path: Path) -> None:
        if not self.persistent:
            pytest.skip("this backend keeps nothing after close()")
        self.filled(tmp_path, 3).close()
        with self.open_dict(tmp_path, flag="n") as d:
            assert len(d) == 0
        with self.open_dict(tmp_path) as d:
            assert len(d) == 0

    def test_missing_target_with_flag_r_or_w(self, tmp_path: Path) -> None:
        if not self.file_based:
            pytest.skip("not stored in a file")
        for flag in ("r", "w"):
            with pytest.raises(FileNotFoundError, match="flag='c'"):
                self.open_dict(tmp_path, flag=flag)

    def test_read_only_refuses_writes_and_keeps_data(self, tmp_path: Path) -> None:
        if not self.persistent:
            pytest.skip("this backend keeps nothing after close()")
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

    def test_transaction_read_modify_write(self, tmp_path: Path) -> None:
        with self.open_dict(tmp_path) as d:
            for _ in range(5):
                with d.transaction():
                    count = int(d.get("n", "0") if self.str_values_only else d.get("n", 0))
                    d["n"] = str(count + 1) if self.str_values_only else count + 1
            assert d["n"] in (5, "5")

    # Copies versus live objects.

    def test_nested_change_semantics(self, tmp_path: Path) -> None:
        if self.str_values_only:
            pytest.skip("values are plain strings")
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

    def test_writeback_saves_nested_changes(self, tmp_path: Path) -> None:
        if self.str_values_only:
            pytest.skip("values are plain strings")
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

    def test_mapping_abc(self, tmp_path: Path) -> None:
        with self.open_dict(tmp_path) as d:
            assert isinstance(d, Mapping)
            assert isinstance(d, persistdict.PersistDict)
