from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict import PersistDict
from persistdict.testing import MappingConformance


class TestPickle(MappingConformance):
    backend_name = "pickle"
    live_objects = True

    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        return persistdict.open(folder / "state.pkl", backend="pickle", **options)

    def unstorable(self) -> Any:
        return {"lambda": lambda: None}


class Account:
    """An object with a ``__dict__``: rolled back in place."""

    def __init__(self) -> None:
        self.balance = 10
        self.history: list[int] = [10]


class Point:
    """An object with ``__slots__`` only: rolled back as the copy made when the block began."""

    __slots__ = ("x",)

    def __init__(self, x: int) -> None:
        self.x = x


def test_rollback_restores_python_objects_in_place(tmp_path: Path) -> None:
    import collections

    with persistdict.open(tmp_path / "objects.pkl", backend="pickle") as d:
        account, tags, queue, pair = Account(), {"a"}, collections.deque([1]), ([1], "x")
        point = Point(1)
        d.update({"account": account, "tags": tags, "queue": queue, "pair": pair, "pt": point})
        with pytest.raises(RuntimeError), d.transaction():
            account.balance = 0
            account.history.append(0)
            account.extra = True  # type: ignore[attr-defined]
            tags.add("b")
            queue.append(2)
            pair[0].append(2)
            point.x = 99
            raise RuntimeError
        assert d["account"] is account
        assert vars(account) == {"balance": 10, "history": [10]}
        assert d["tags"] is tags
        assert tags == {"a"}
        assert d["queue"] is queue
        assert list(queue) == [1]
        assert d["pair"] is pair
        assert pair == ([1], "x")
        assert d["pt"] is not point
        assert d["pt"].x == 1
        account.balance = 5
    with persistdict.open(tmp_path / "objects.pkl", backend="pickle") as d:
        assert d["account"].balance == 5
        assert d["pt"].x == 1


class Uncopyable:
    """Picklable, but refuses copy.deepcopy."""

    __slots__ = ("x",)

    def __init__(self, x: int) -> None:
        self.x = x

    def __deepcopy__(self, memo: object) -> Uncopyable:
        raise TypeError("no copies")


def test_a_value_that_cannot_be_copied_does_not_stop_a_transaction(tmp_path: Path) -> None:
    with persistdict.open(tmp_path / "objects.pkl", backend="pickle") as d:
        odd = Uncopyable(1)
        d.update({"odd": odd, "n": [1]})
        with pytest.raises(RuntimeError), d.transaction():
            d["n"].append(2)
            raise RuntimeError
        assert d["n"] == [1]
        assert d["odd"] is odd  # left as it is: there was no copy to put back
        with d.transaction():
            odd.x = 5
    with persistdict.open(tmp_path / "objects.pkl", backend="pickle") as d:
        assert d["odd"].x == 5
