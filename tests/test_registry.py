"""The backend registry: built-ins, entry-point discovery and run-time registration."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict import backends
from persistdict.backends.memory import MemoryBackend
from persistdict.detect import detect_backend


class TapeBackend(MemoryBackend):
    """A third-party backend as a plugin package would ship it (here: memory underneath)."""

    name = "tape"
    schemes = ("tape",)
    suffixes = (".tape",)


@pytest.fixture
def plugin_installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Pretend a distribution declares [project.entry-points."persistdict.backends"]."""
    point = EntryPoint(
        name="tape", value=f"{__name__}:TapeBackend", group=backends.ENTRY_POINT_GROUP
    )

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        return [point] if group == backends.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(backends, "entry_points", fake_entry_points)
    backends._third_party.cache_clear()
    yield
    backends._third_party.cache_clear()
    backends._loaded.pop("tape", None)


def test_builtins_are_listed_and_lazy() -> None:
    names = backends.available()
    for name in ("json", "csv", "pickle", "sqlite", "dbm", "memory"):
        assert name in names
    assert backends.backend_class("sqlite") is persistdict.SqliteBackend
    assert backends.registry["sqlite"] is persistdict.SqliteBackend
    with pytest.raises(TypeError):
        backends.registry["x"] = object  # type: ignore[index]


@pytest.mark.usefixtures("plugin_installed")
def test_entry_point_backend_is_found_by_name_scheme_and_suffix(tmp_path: Path) -> None:
    assert "tape" in backends.available()
    with persistdict.open("tape://anything") as d:
        d["k"] = [1]
        assert d.backend.name == "tape"
        assert d["k"] == [1]
    with persistdict.open(tmp_path / "x.tape") as d:
        assert isinstance(d.backend, TapeBackend)
    with persistdict.open("whatever", backend="tape") as d:
        assert isinstance(d.backend, TapeBackend)


def test_register_backend_refuses_silent_replacement() -> None:
    with pytest.raises(ValueError, match="a backend named 'sqlite' exists already"):
        backends.register_backend("sqlite", TapeBackend)

    def factory(location: str, **options: Any) -> MemoryBackend:
        return MemoryBackend(location, flag=options.get("flag", "c"))

    backends.register_backend("scratch", factory)
    try:
        with pytest.raises(ValueError, match="exists already"):
            backends.register_backend("scratch", factory)
        backends.register_backend("scratch", factory, replace=True)
        with persistdict.open("anything", backend="scratch") as d:
            d["a"] = 1
            assert d == {"a": 1}
    finally:
        backends._loaded.pop("scratch", None)


class PlainTape:
    """A backend that does not subclass BackendBase: it declares what it has as plain class
    attributes, and gets every default it leaves out from persistdict, in one place."""

    schemes = ("plaintape",)
    suffixes = (".ptape",)

    @staticmethod
    def sniff(head: bytes) -> bool:
        return head.startswith(b"PTAPE")

    def __init__(self, location: str, *, flag: str = "c") -> None:
        self.inner = MemoryBackend("memory://", flag=flag)
        self.get, self.set, self.delete = self.inner.get, self.inner.set, self.inner.delete
        self.contains, self.iter_keys, self.count = (
            self.inner.contains,
            self.inner.iter_keys,
            self.inner.count,
        )
        self.flush, self.close = self.inner.flush, self.inner.close


def test_a_backend_without_backendbase_is_detected_by_what_it_declares(tmp_path: Path) -> None:
    backends.register_backend("plaintape", PlainTape)
    try:
        marked = tmp_path / "AppData"
        marked.write_bytes(b"PTAPE\x00")
        for target in ("plaintape://x", str(tmp_path / "y.ptape"), str(marked)):
            assert detect_backend(target) == "plaintape"
            with persistdict.open(target) as d:
                d["k"] = [1]
                assert d["k"] == [1]
        with pytest.raises(TypeError, match="the plaintape backend does not take mode=; it takes"):
            persistdict.open("plaintape://x", mode=0o600)
    finally:
        backends._loaded.pop("plaintape", None)
    with pytest.raises(ValueError, match="can't tell which backend stores"):
        detect_backend(str(marked))  # nothing of it is kept once it is gone
