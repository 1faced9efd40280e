"""The memory backend: a per-key store that keeps nothing after close, for tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from persistdict.backends.base import BackendBase, check_flag

__all__ = ["MemoryBackend"]


class MemoryBackend(BackendBase):
    """Encoded values in a plain dict: behaves like a per-key backend (reads return copies)
    without touching storage. Every ``open("memory://")`` starts empty."""

    name: ClassVar[str] = "memory"
    schemes: ClassVar[tuple[str, ...]] = ("memory",)
    native_transactions: ClassVar[bool] = True
    persistent: ClassVar[bool] = False
    takes_url: ClassVar[bool] = True
    durability: ClassVar[str] = "nothing is kept after the process ends"

    def __init__(self, location: str = "memory://", *, flag: str = "c") -> None:
        self.location = location
        self.read_only = check_flag(flag) == "r"
        self._data: dict[str, Any] = {}
        self._saved: list[dict[str, Any]] = []

    def get(self, key: str) -> Any:
        return self._data[key]

    def set(self, key: str, value: Any) -> None:
        self.check_writable()
        self._data[key] = value

    def delete(self, key: str) -> None:
        self.check_writable()
        del self._data[key]

    def contains(self, key: str) -> bool:
        return key in self._data

    def iter_keys(self) -> Iterator[str]:
        return iter(list(self._data))

    def iter_items(self) -> Iterator[tuple[str, Any]]:
        return iter(list(self._data.items()))

    def count(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self.check_writable()
        self._data.clear()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.check_writable()
        self._saved.append(dict(self._data))  # values are encoded, immutable: shallow is enough
        try:
            yield
        except BaseException:
            self._data = self._saved.pop()
            raise
        self._saved.pop()

    def describe(self) -> str:
        return "memory"
