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
