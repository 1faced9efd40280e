"""Serializers turn values into ``str`` or ``bytes`` for per-key backends.

Snapshot backends (json, csv, pickle files) encode the whole file themselves and do not use a
serializer. Per-key backends (sqlite, dbm, lmdb, redis, postgres, memory) store each value as
the serializer's output and decode it on every read, so a read returns a fresh copy.
"""

from __future__ import annotations

import json
import pickle
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "JsonSerializer",
    "PickleSerializer",
    "Serializer",
    "serializer_for",
]


@runtime_checkable
class Serializer(Protocol):
    """Anything with ``dumps`` and ``loads``; ``loads`` must accept what ``dumps`` returned.

    Backends that only store bytes hand ``loads`` the UTF-8 encoding of a ``str`` result, so a
    serializer whose ``dumps`` returns ``str`` must also accept ``bytes`` in ``loads``.
    """

    def dumps(self, obj: Any, /) -> str | bytes: ...

    def loads(self, data: str | bytes, /) -> Any: ...


class JsonSerializer:
    """JSON text, the default. Tuples come back as lists and dict keys as strings.

    Args:
        ensure_ascii: escape non-ASCII characters; off by default so text stays readable.
        **kwargs: passed to ``json.dumps`` (``sort_keys``, ``default``, ``separators``...).
    """

    def __init__(self, *, ensure_ascii: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("separators", (",", ":"))
        self._encoder = json.JSONEncoder(ensure_ascii=ensure_ascii, **kwargs)
        self._decoder = json.JSONDecoder()
        self._kwargs = {"ensure_ascii": ensure_ascii, **kwargs}

    def dumps(self, obj: Any, /) -> str:
        return self._encoder.encode(obj)

    def loads(self, data: str | bytes, /) -> Any:
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data).decode("utf-8")
        return self._decoder.decode(data)

    def __repr__(self) -> str:
        return f"JsonSerializer({', '.join(f'{k}={v!r}' for k, v in self._kwargs.items())})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JsonSerializer) and self._kwargs == other._kwargs

    __hash__ = None  # type: ignore[assignment]


class PickleSerializer:
    """Any picklable Python object. Loading a pickle runs code: use it on trusted data only.

    Never chosen automatically; pass ``serializer=PickleSerializer()`` (or ``"pickle"``).
    """

    def __init__(self, protocol: int = pickle.DEFAULT_PROTOCOL) -> None:
        self.protocol = protocol

    def dumps(self, obj: Any, /) -> bytes:
        return pickle.dumps(obj, protocol=self.protocol)

    def loads(self, data: str | bytes, /) -> Any:
        if isinstance(data, str):
            raise TypeError("PickleSerializer.loads needs bytes; the stored value is text")
        return pickle.loads(data)

    def __repr__(self) -> str:
        return f"PickleSerializer(protocol={self.protocol})"


_BY_NAME = {"json": JsonSerializer, "pickle": PickleSerializer}


def serializer_for(spec: Serializer | str | None) -> Serializer:
    """Return a serializer from an instance, a name (``"json"``, ``"pickle"``) or ``None``."""
    if spec is None:
        return JsonSerializer()
    if isinstance(spec, str):
        try:
            return _BY_NAME[spec]()  # type: ignore[no-any-return]
        except KeyError:
            raise ValueError(
                f"unknown serializer {spec!r}; use one of {sorted(_BY_NAME)} "
                "or pass an object with dumps() and loads()"
            ) from None
    if not isinstance(spec, Serializer):
        raise TypeError(
            f"serializer must have dumps() and loads() methods, not {type(spec).__name__}"
        )
    return spec
