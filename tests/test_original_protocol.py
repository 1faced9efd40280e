"""Backends written for the original persistdict protocol (SPEC section 8) keep working.

That protocol is ``get``, ``set``, ``delete``, ``contains``, ``keys``, ``__len__``, ``clear``,
``flush`` and ``close``, with ``str`` values; no ``iter_keys``, ``count``, ``stores_objects``
or ``read_only``. The backend below is written the way such a plugin was: a JSON file of
encoded strings, loaded at open and saved at flush. It goes through the whole conformance
suite, through ``PersistDict(backend)`` and through the entry-point group.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict import PersistDict, ReadOnlyError, backends
from persistdict.testing import MappingConformance


class OriginalBackend:
    """A backend of the original shape: str values, ``keys()`` and ``len()``."""

    def __init__(self, path: str, flag: str = "c") -> None:
        self.path = path
        self.flag = flag
        if flag == "n" or (flag == "c" and not os.path.exists(path)):
            self.data: dict[str, str] = {}
            self.flush()
        else:
            try:
                with open(path, encoding="utf-8") as f:
                    self.data = json.load(f)
            except FileNotFoundError:
                raise FileNotFoundError(
                    errno.ENOENT, f"no such file {path!r}; open it with flag='c' to create it"
                ) from None

    def _writable(self) -> None:
        if self.flag == "r":
            raise ReadOnlyError(f"{self.path!r} was opened read-only")

    def get(self, key: str) -> str:
        return self.data[key]

    def set(self, key: str, value: str) -> None:
        self._writable()
        if not isinstance(value, str):
            raise TypeError("values must be str")
        self.data[key] = value

    def delete(self, key: str) -> None:
        self._writable()
        del self.data[key]

    def contains(self, key: str) -> bool:
        return key in self.data

    def keys(self) -> list[str]:
        return list(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def clear(self) -> None:
        self._writable()
        self.data.clear()

    def flush(self) -> None:
        if self.flag != "r":
            with open(self.path, "w", encoding="utf-8") as f:
                json.dump(self.data, f)

    def close(self) -> None:
        self.flush()


class NoneForMissing(OriginalBackend):
    """Some original backends answered ``None`` for a missing key and ignored a missing delete."""

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def delete(self, key: str) -> None:
        self._writable()
        self.data.pop(key, None)


class TestOriginalProtocol(MappingConformance):
    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        flag = options.pop("flag", "c")
        return PersistDict(OriginalBackend(str(folder / "orig.json"), flag), **options)


class TestOriginalProtocolNoneForMissing(MappingConformance):
    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        flag = options.pop("flag", "c")
        return PersistDict(NoneForMissing(str(folder / "orig.json"), flag), **options)


def test_an_original_backend_is_a_backend(tmp_path: Path) -> None:
    old = OriginalBackend(str(tmp_path / "o.json"))
    assert isinstance(old, persistdict.Backend)
    assert isinstance(persistdict.MemoryBackend("memory://"), persistdict.Backend)
    assert not isinstance(object(), persistdict.Backend)


def test_something_else_is_refused_naming_both_shapes() -> None:
    class Half:
        def get(self, key: str) -> str:
            return ""

    with pytest.raises(TypeError, match=r"Half is not a persistdict backend.*missing: set, "):
        PersistDict(Half())  # type: ignore[arg-type]


def path_only(path: str) -> OriginalBackend:
    """An original factory: the original ``open()`` passed a path and nothing else."""
    return OriginalBackend(path)


@pytest.fixture
def original_plugin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A distribution declaring original-protocol backends in ``persistdict.backends``."""
    points = [
        EntryPoint(name=name, value=f"{__name__}:{obj}", group=backends.ENTRY_POINT_GROUP)
        for name, obj in (("oldjson", "OriginalBackend"), ("oldpath", "path_only"))
    ]
    monkeypatch.setattr(
        backends,
        "entry_points",
        lambda *, group: points if group == backends.ENTRY_POINT_GROUP else [],
    )
    backends._third_party.cache_clear()
    yield
    backends._third_party.cache_clear()
    backends._loaded.pop("oldjson", None)
    backends._loaded.pop("oldpath", None)


@pytest.mark.usefixtures("original_plugin")
def test_an_original_backend_works_through_the_entry_point(tmp_path: Path) -> None:
    target = tmp_path / "plugin.json"
    with persistdict.open(target, backend="oldjson") as d:
        d["cfg"] = {"root": "/srv"}
        d.update({"n": 1, "m": 2})
        assert d.pop("m") == 2
        assert d.setdefault("n", 5) == 1
        assert sorted(d) == ["cfg", "n"]
        assert len(d) == 2
        with pytest.raises(RuntimeError), d.transaction():
            d["n"] = 99
            raise RuntimeError
        assert d["n"] == 1
    stored = json.loads(target.read_text())
    assert {key: json.loads(text) for key, text in stored.items()} == {
        "cfg": {"root": "/srv"},
        "n": 1,
    }
    with persistdict.open(target, "r", backend="oldjson") as d:
        assert dict(d) == {"cfg": {"root": "/srv"}, "n": 1}
        with pytest.raises(ReadOnlyError):
            d["x"] = 1


@pytest.mark.usefixtures("original_plugin")
def test_an_original_factory_taking_only_a_path_opens_with_the_default_flag(
    tmp_path: Path,
) -> None:
    target = tmp_path / "p.json"
    with persistdict.open(target, backend="oldpath") as d:
        d["a"] = [1]
    with persistdict.open(target, backend="oldpath") as d:
        assert d["a"] == [1]
    with pytest.raises(TypeError, match="does not take flag="):
        persistdict.open(target, "r", backend="oldpath")


@pytest.mark.usefixtures("original_plugin")
def test_an_original_backend_works_through_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from persistdict.cli import main

    target = str(tmp_path / "cli.json")
    assert main(["set", target, "k", "[1, 2]", "--backend", "oldjson"]) == 0
    assert main(["get", target, "k", "--backend", "oldjson"]) == 0
    assert capsys.readouterr().out == "[1, 2]\n"
    # It declares none of what `info` shows: the defaults stand in, in one place.
    assert main(["info", target, "--backend", "oldjson", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "target": target,
        "backend": "OriginalBackend",
        "keys": 1,
        "durability": "see the backends table in the README",
    }
    copy = tmp_path / "copy.db"
    assert main(["convert", target, str(copy), "--from", "oldjson", "-q"]) == 0
    with persistdict.open(copy, "r") as d:
        assert dict(d) == {"k": [1, 2]}
