"""What ``dict`` does, checked on a persistent dict: CPython's ``test.mapping_tests`` expectations.

The expectations of ``BasicTestMappingProtocol`` and ``TestMappingProtocol`` from CPython's
``Lib/test/mapping_tests.py``, rewritten for persistdict rather than imported (some Pythons ship
without ``Lib/test``). The adaptations, and nothing else:

* keys are ``str`` (``{1: 2}`` becomes ``{"1": 2}``), values are JSON values (tuples become
  lists), or ``str`` for a backend that stores only text;
* per-key backends hand out copies, so the one expectation that needs live objects
  (``d.setdefault("key", []).append(3)``) runs with ``writeback=True`` there;
* ``fromkeys``, ``copy`` and the ``type2test(x=1)`` constructor are left out: a persistent dict
  is made by ``persistdict.open``, not by calling its class;
* ``popitem`` drains dicts of up to 256 keys, not 2048 (``PERSISTDICT_STRESS`` raises it).

``persistdict.testing.MappingConformance`` inherits this class, so every backend that
passes the conformance suite runs these tests too.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest

from persistdict.mapping import PersistDict

__all__ = ["CPYTHON_TESTS", "DictProtocol", "KeysOnly"]

#: Each test of CPython's ``BasicTestMappingProtocol``/``TestMappingProtocol``, and the test
#: here that checks its expectations (or why none does). tests/test_dict_protocol.py compares
#: it with ``test.mapping_tests`` where that module is installed, so a new CPython
#: expectation can't go unnoticed.
CPYTHON_TESTS: dict[str, str] = {
    "test_read": "test_dict_protocol_read",
    "test_write": "test_dict_protocol_write",
    "test_constructor": "test_dict_protocol_read",  # two empty dicts are equal; no type2test()
    "test_bool": "test_dict_protocol_read",
    "test_keys": "test_dict_protocol_views_and_arities",
    "test_values": "test_dict_protocol_views_and_arities",
    "test_items": "test_dict_protocol_views_and_arities",
    "test_len": "test_dict_protocol_views_and_arities",
    "test_getitem": "test_dict_protocol_views_and_arities",
    "test_contains": "test_dict_protocol_contains_answers_like_dict",
    "test_clear": "test_dict_protocol_clear",
    "test_update": "test_dict_protocol_update",
    "test_get": "test_dict_protocol_get",
    "test_setdefault": "test_dict_protocol_setdefault",
    "test_popitem": "test_dict_protocol_popitem_drains",
    "test_pop": "test_dict_protocol_pop",
    "test_fromkeys": "left out: a persistent dict is made by persistdict.open(), not its class",
    "test_copy": "left out: no copy(); dict(d) makes a plain copy",
}


class _InputError(Exception):
    """Raised by the misbehaving inputs below; must come out of the dict unchanged."""


class KeysOnly:
    """Only ``keys`` and ``__getitem__``: ``dict.update`` takes it as a mapping."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def keys(self) -> Any:
        return self._data.keys()

    def __getitem__(self, key: str) -> Any:
        return self._data[key]


class _KeysFail:
    def keys(self) -> Any:
        raise _InputError


class _KeysIteratorFails:
    def keys(self) -> Iterator[str]:
        yield "a"
        raise _InputError

    def __getitem__(self, key: str) -> Any:
        return key


class _GetitemFails:
    def keys(self) -> Iterator[str]:
        return iter("abcdefghijklmnopqrstuvwxyz")

    def __getitem__(self, key: str) -> Any:
        raise _InputError


class _BadSeq:
    def __iter__(self) -> _BadSeq:
        return self

    def __next__(self) -> Any:
        raise _InputError


_Test = TypeVar("_Test", bound=Callable[..., None])
_RULE = "_persistdict_collected_if"


def _collected_if(condition: Callable[[Any], bool], reason: str) -> Callable[[_Test], _Test]:
    """Collect the test only in subclasses whose flags meet ``condition(cls)``.

    A subclass that can't meet it (``persistent = False``, ``str_values_only = True``...) gets
    no such test at all rather than one that is skipped each run: the flags are class
    attributes, read when the subclass is made. ``reason`` says what the test needs.
    """

    def mark(test: _Test) -> _Test:
        setattr(test, _RULE, (condition, reason))
        return test

    return mark


class _NotCollected:
    """Stands in a subclass for a test its flags rule out: not callable, so pytest collects
    nothing under its name; it keeps the test for a further subclass whose flags allow it."""

    def __init__(self, test: Callable[..., None], reason: str) -> None:
        self.test = test
        self.reason = reason

    def __repr__(self) -> str:
        return f"<{self.test.__name__} not collected here: {self.reason}>"


def _apply_collection_rules(cls: type) -> None:
    """Replace the inherited tests whose rule ``cls`` fails by a ``_NotCollected``, and bring
    back those it meets again; tests ``cls`` defines itself are left as they are."""
    own = vars(cls)
    for name in dir(cls):
        if not name.startswith("test") or name in own:
            continue
        found = inspect.getattr_static(cls, name)
        test = found.test if isinstance(found, _NotCollected) else found
        rule = getattr(test, _RULE, None)
        if rule is None:
            continue
        condition, reason = rule
        wanted = test if condition(cls) else _NotCollected(test, reason)
        if wanted is not found:
            setattr(cls, name, wanted)


class DictProtocol:
    """The dict-contract tests; not collected alone (its name does not start with ``Test``)."""

    #: Only ``str`` values can be stored (csv).
    str_values_only: ClassVar[bool] = False
    #: Reads return the stored objects themselves (snapshot files), not copies.
    live_objects: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _apply_collection_rules(cls)

    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        raise NotImplementedError

    # Helpers.

    def v(self, value: Any) -> Any:
        """``value`` as this backend stores it: itself, or its text for a text-only backend."""
        return str(value) if self.str_values_only else value

    def reference(self) -> dict[str, Any]:
        """mapping_tests' ``_reference()``: values invariant by storage."""
        return {"1": self.v("2"), "key1": self.v("value1"), "key2": self.v([1, 2, 3])}

    def fresh(self, folder: Path, name: str, data: dict[str, Any] | None = None) -> PersistDict:
        """A new empty dict in ``folder/name`` (one folder per dict), filled one key at a time."""
        place = folder / name
        place.mkdir()
        d = self.open_dict(place)
        for key, value in (data or {}).items():
            d[key] = value
        return d

    # BasicTestMappingProtocol.

    def test_dict_protocol_read(self, tmp_path: Path) -> None:
        ref = self.reference()
        other_key, other_value = "other", self.v("absent")
        with (
            self.fresh(tmp_path, "p") as p,
            self.fresh(tmp_path, "q") as q,
            self.fresh(tmp_path, "d", ref) as d,
        ):
            assert p == q
            assert p is not q
            for key, value in ref.items():
                assert d[key] == value
            with pytest.raises(KeyError):
                d[other_key]
            assert len(p) == 0
            assert len(d) == len(ref)
            for key in ref:
                assert key in d
            assert other_key not in d
            assert p == p
            assert d == d
            assert p != d
            assert d != p
            assert not p
            assert d
            for it, ref_part in (
                (iter(d.keys()), ref.keys()),
                (iter(d), ref.keys()),
                (iter(d.values()), ref.values()),
                (iter(d.items()), ref.items()),
            ):
                assert hasattr(it, "__next__")
                assert hasattr(it, "__iter__")
                assert sorted(map(repr, it)) == sorted(map(repr, ref_part))
            key, value = next(iter(d.items()))
            assert d.get(key, other_value) == value
            assert d.get(other_key, other_value) == other_value
            assert other_key not in d

    def test_dict_protocol_write(self, tmp_path: Path) -> None:
        ref = self.reference()
        known_key, known_value = "other", self.v("absent")
        with self.fresh(tmp_path, "p") as p:
            for key, value in ref.items():
                p[key] = value
                assert p[key] == value
            for key in ref:
                del p[key]
                with pytest.raises(KeyError):
                    p[key]
            p.update(ref)
            assert dict(p) == ref
            items = list(p.items())
            p.clear()
            p.update(items)
            assert dict(p) == ref
        with self.fresh(tmp_path, "d", ref) as d:
            key, value = next(iter(d.items()))
            assert d.setdefault(key, known_value) == value
            assert d[key] == value
            assert d.setdefault(known_key, known_value) == known_value
            assert d[known_key] == known_value
            assert d.pop(known_key) == known_value
            assert known_key not in d
            with pytest.raises(KeyError):
                d.pop(known_key)
            d[known_key] = known_value
            assert d.pop(known_key, 909) == known_value
            assert known_key not in d
            assert d.pop(known_key, 909) == 909
            key, value = d.popitem()
            assert key not in d
            assert value == ref[key]
        with self.fresh(tmp_path, "e") as e, pytest.raises(KeyError):
            e.popitem()

    def test_dict_protocol_views_and_arities(self, tmp_path: Path) -> None:
        with self.fresh(tmp_path, "d") as d:
            assert list(d.keys()) == []
            assert list(d.values()) == []
            assert list(d.items()) == []
            assert len(d) == 0
            calls: list[tuple[Any, tuple[Any, ...]]] = [
                (d.keys, (None,)),
                (d.values, (None,)),
                (d.items, (None,)),
                (d.__getitem__, ()),
                (d.__contains__, ()),
                (d.get, ()),
                (d.get, (None, None, None)),
                (d.setdefault, ()),
                (d.popitem, (42,)),
                (d.clear, (None,)),
            ]
            for method, args in calls:
                with pytest.raises(TypeError):
                    method(*args)
            d.update({"a": self.v(1), "b": self.v(2)})
            keys = d.keys()
            assert "a" in keys
            assert "b" in keys
            assert "c" not in keys
            assert sorted(d.values(), key=repr) == sorted([self.v(1), self.v(2)], key=repr)
            d["c"] = self.v(3)
            d["a"] = self.v(4)
            assert d["c"] == self.v(3)
            assert d["a"] == self.v(4)
            del d["b"]
            assert d == {"a": self.v(4), "c": self.v(3)}

    def test_dict_protocol_contains_answers_like_dict(self, tmp_path: Path) -> None:
        # dict answers False for anything that is not a present key or (key, value) pair.
        with self.fresh(tmp_path, "d", {"a": self.v(1), "b": self.v(2)}) as d:
            assert "a" in d
            assert "c" not in d
            assert ("a", self.v(1)) in d.items()
            assert ("a", self.v(2)) not in d.items()
            questions: list[Any] = [(1, 2), ("a",), ("a", self.v(1), 3), 5, None, "a", (None, 1)]
            for item in questions:
                assert item not in d.items()
                assert item not in dict(d).items()  # the reference agrees
            odd_keys: list[Any] = [1, None, b"a", ("a",)]
            keys = d.keys()
            for key in odd_keys:
                assert key not in d
                assert key not in keys
                assert d.get(key) is None
                assert d.get(key, 7) == 7
            assert self.v(1) in d.values()
            assert self.v(9) not in d.values()

    def test_dict_protocol_update(self, tmp_path: Path) -> None:
        ref = self.reference()
        other = {"other": self.v("absent")}
        with self.fresh(tmp_path, "d") as d:
            d.update(other)
            assert list(d.items()) == list(other.items())
            d.clear()
            d.update()
            assert d == {}
            d.update(other.items())
            assert list(d.items()) == list(other.items())
            d.clear()
            d.update(iter(other.items()))
            assert list(d.items()) == list(other.items())
            with pytest.raises((TypeError, AttributeError)):
                d.update(42)
            d.clear()
            d.update(KeysOnly(ref))
            assert sorted(d.items()) == sorted(ref.items())
            d.clear()
            for failing in (_KeysFail(), _KeysIteratorFails(), _GetitemFails(), _BadSeq()):
                with pytest.raises(_InputError):
                    d.update(failing)
                assert d == {}  # nothing of a failed update is stored
            with pytest.raises(ValueError, match="pair"):
                d.update([(1, 2, 3)])
            with pytest.raises(ValueError, match="pair"):
                d.update([("a", self.v(1), self.v(2))])
            with pytest.raises(TypeError):
                d.update([5])
            assert d == {}
            d.update(["ab"])  # any two-item sequence is a pair, as for dict
            assert d == {"a": "b"}
            d.clear()
            d.update({"1": self.v(100)})
            d.update({"2": self.v(20)})
            d.update({"1": self.v(1), "2": self.v(2), "3": self.v(3)})
            assert d == {"1": self.v(1), "2": self.v(2), "3": self.v(3)}
            d.update()
            assert d == {"1": self.v(1), "2": self.v(2), "3": self.v(3)}
            d.clear()
            d.update(x=self.v(100))
            d.update(y=self.v(20))
            d.update(x=self.v(1), y=self.v(2), z=self.v(3))
            assert d == {"x": self.v(1), "y": self.v(2), "z": self.v(3)}
            d.clear()
            d.update([("x", self.v(100)), ("y", self.v(20))])
            assert d == {"x": self.v(100), "y": self.v(20)}
            d.clear()
            d.update([("x", self.v(100)), ("y", self.v(20))], x=self.v(1), y=self.v(2))
            assert d == {"x": self.v(1), "y": self.v(2)}
        with (
            self.fresh(tmp_path, "a", {"1": self.v(3), "2": self.v(4)}) as a,
            self.fresh(tmp_path, "b", {"1": self.v(2), "3": self.v(4), "5": self.v(6)}) as b,
        ):
            a.update(b.items())
            assert a == {"1": self.v(2), "2": self.v(4), "3": self.v(4), "5": self.v(6)}

    def test_dict_protocol_get(self, tmp_path: Path) -> None:
        with self.fresh(tmp_path, "e") as e:
            assert e.get("c") is None
            assert e.get("c", 3) == 3
        with self.fresh(tmp_path, "d", {"a": self.v(1), "b": self.v(2)}) as d:
            assert d.get("c") is None
            assert d.get("c", 3) == 3
            assert d.get("a") == self.v(1)
            assert d.get("a", 3) == self.v(1)

    @_collected_if(
        lambda cls: not cls.str_values_only,
        "stores only str values: no None default, no list to append to",
    )
    def test_dict_protocol_setdefault(self, tmp_path: Path) -> None:
        place = tmp_path / "d"
        place.mkdir()
        # A value setdefault() returns is the stored one only for live objects or writeback.
        options = {} if self.live_objects else {"writeback": True}
        with self.open_dict(place, **options) as d:
            assert d.setdefault("key0") is None
            d.setdefault("key0", [])
            assert d.setdefault("key0") is None
            d.setdefault("key", []).append(3)
            assert d["key"][0] == 3
            d.setdefault("key", []).append(4)
            assert len(d["key"]) == 2

    def test_dict_protocol_popitem_drains(self, tmp_path: Path) -> None:
        largest = 11 if int(os.environ.get("PERSISTDICT_STRESS", "1")) > 1 else 8
        for log2size in range(largest + 1):
            size = 2**log2size
            with self.fresh(tmp_path, f"a{size}") as a, self.fresh(tmp_path, f"b{size}") as b:
                a.update((repr(i), self.v(i)) for i in range(size))
                b.update((repr(i), self.v(i)) for i in range(size))
                seen = set()
                for _ in range(size):
                    ka, va = a.popitem()
                    assert va == self.v(int(ka))
                    kb, vb = b.popitem()
                    assert vb == self.v(int(kb))
                    seen.add(ka)
                assert seen == {repr(i) for i in range(size)}
                assert not a
                assert not b

    def test_dict_protocol_pop(self, tmp_path: Path) -> None:
        with self.fresh(tmp_path, "d") as d:
            d["k"] = self.v("v")
            with pytest.raises(KeyError):
                d.pop("other")
            assert d.pop("k") == self.v("v")
            assert len(d) == 0
            with pytest.raises(KeyError):
                d.pop("k")
            assert d.pop("abc", self.v("def")) == self.v("def")
            d["abc"] = self.v("def")
            assert d.pop("abc", 1) == self.v("def")

    def test_dict_protocol_clear(self, tmp_path: Path) -> None:
        data = {"1": self.v(1), "2": self.v(2), "3": self.v(3)}
        with self.fresh(tmp_path, "d", data) as d:
            d.clear()
            assert d == {}
