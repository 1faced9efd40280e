"""Serializers turn values into ``str`` or ``bytes`` for per-key backends.

Snapshot backends (json, csv, pickle files) encode the whole file themselves and do not use a
serializer. Per-key backends (sqlite, dbm, lmdb, redis, postgres, memory) store each value as
the serializer's output and decode it on every read, so a read returns a fresh copy.

With the ``fast`` extra (orjson) installed, the default is
[`OrjsonSerializer`][persistdict.serializers.OrjsonSerializer]: it writes
exactly what [`JsonSerializer`][persistdict.JsonSerializer] writes and reads values faster, with
the same results.
Only decoding goes through orjson. Its encoder can't be made to agree with the stdlib: it
stores ``Enum`` members, ``UUID`` objects and dataclasses that ``json`` refuses (no option
turns that off), writes ``NaN`` as ``null`` and spells some floats differently (``1e-7`` for
``1e-07``). Stored values therefore stay byte-identical whether orjson is installed or not.
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Callable
from typing import IO, Any, Protocol, runtime_checkable

from persistdict.errors import UntrustedPickleError

__all__ = [
    "JsonSerializer",
    "OrjsonSerializer",
    "PickleSerializer",
    "Serializer",
    "serializer_for",
    "unpickle",
    "why_not_json",
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
    """JSON text, the default. Tuples come back as lists and dict keys as strings; the
    serializers page has the whole round-trip table.

    Args:
        ensure_ascii: escape non-ASCII characters; off by default so text stays readable.
        allow_nan: store ``float("nan")`` and the infinities as bare ``NaN``/``Infinity``,
            which Python reads back but other JSON readers reject. Off by default: such a
            value raises ``ValueError`` naming its key. Stored ``NaN`` is read either way.
        **kwargs: passed to ``json.dumps`` (``sort_keys``, ``default``, ``separators``...).
    """

    def __init__(
        self, *, ensure_ascii: bool = False, allow_nan: bool = False, **kwargs: Any
    ) -> None:
        kwargs.setdefault("separators", (",", ":"))
        self._encoder = json.JSONEncoder(ensure_ascii=ensure_ascii, allow_nan=allow_nan, **kwargs)
        self._decoder = json.JSONDecoder()
        self._kwargs = {"ensure_ascii": ensure_ascii, **kwargs}
        if allow_nan:  # shown only when on: repr() and == of the default stay as they were
            self._kwargs["allow_nan"] = True
        if type(self).dumps is JsonSerializer.dumps:
            # The encoder's own method in place of the one below: one call fewer per write.
            # Not when a subclass overrides dumps(): that must be the one called.
            self.dumps = self._encoder.encode  # type: ignore[method-assign]

    def dumps(self, obj: Any, /) -> str:
        """Encode ``obj`` as JSON text; ``TypeError``/``ValueError`` if it can't be."""
        return self._encoder.encode(obj)

    def loads(self, data: str | bytes, /) -> Any:
        # Exact types first: what per-key backends return (str from SQLite, bytes from
        # LMDB). isinstance() with a tuple and bytes() of bytes cost 5% of an LMDB get.
        kind = data.__class__
        if kind is bytes:
            data = data.decode()  # type: ignore[union-attr]
        elif kind is not str and isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data).decode("utf-8")
        return self._decoder.decode(data)  # type: ignore[arg-type]  # str by now

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._kwargs.items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JsonSerializer) and self._kwargs == other._kwargs

    __hash__ = None  # type: ignore[assignment]


def why_not_json(exc: BaseException) -> str:
    """json's reason for refusing a value, in plainer words for NaN and Infinity."""
    text = str(exc)
    if isinstance(exc, ValueError) and text.startswith("Out of range float values"):
        return (
            "it holds NaN or Infinity, which are not valid JSON (other JSON readers reject "
            "them); store None (JSON null) or a string such as 'nan' instead"
        )
    return text


_probed = False
_fast_loads: Callable[[str | bytes], Any] | None = None


def _orjson_loads() -> Callable[[str | bytes], Any] | None:
    """orjson's ``loads``, or ``None`` without orjson; imported on first use, not with
    persistdict (it takes longer to import than ``json`` and ``sqlite3`` together)."""
    global _probed, _fast_loads
    if not _probed:
        try:
            import orjson
        except ImportError:
            pass
        else:
            _fast_loads = orjson.loads
        _probed = True
    return _fast_loads


# Byte values mapped to b"0" for ASCII digits and b" " otherwise: a run of 19 zeros in the
# translated text marks a number of 19+ digits, which orjson would turn into a float where json
# keeps an exact int (orjson's ints are 64-bit).
_DIGITS = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_LONG_NUMBER = b"0" * 19


class OrjsonSerializer(JsonSerializer):
    """[`JsonSerializer`][persistdict.JsonSerializer] with decoding done by orjson where its result
    is the same.

    Stores exactly the text ``JsonSerializer`` stores (the stdlib encodes; see the module
    docstring for why) and returns equal values of the same types, raising the same errors for
    bad data. The default serializer when orjson is installed (``pip install
    'python-persistdict[fast]'``). Takes the same arguments as
    [`JsonSerializer`][persistdict.JsonSerializer].
    """

    def __init__(
        self, *, ensure_ascii: bool = False, allow_nan: bool = False, **kwargs: Any
    ) -> None:
        fast = _orjson_loads()
        if fast is None:
            raise ImportError(
                "OrjsonSerializer needs orjson: pip install 'python-persistdict[fast]'"
            )
        super().__init__(ensure_ascii=ensure_ascii, allow_nan=allow_nan, **kwargs)
        self._fast_loads = fast

    def loads(self, data: str | bytes, /) -> Any:
        # orjson refuses what it would read differently from json (NaN, 1e400, lone
        # surrogates, nesting past 1024, bad UTF-8): json then gives its own result or error.
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
        if _LONG_NUMBER in raw.translate(_DIGITS):
            return JsonSerializer.loads(self, data)
        try:
            return self._fast_loads(raw)
        except ValueError:  # orjson.JSONDecodeError
            return JsonSerializer.loads(self, data)


def unpickle(data: bytes | IO[bytes], *, trusted: bool, what: str) -> Any:
    """Load one pickle from ``data`` (bytes, or a binary stream left where the pickle ends).

    This is the only place persistdict unpickles; every reader of pickled data comes through
    here, so nothing is unpickled unless its caller says the data is trusted. ``trusted`` is
    true only where the user opted in: ``serializer="pickle"``, ``backend``/``format="pickle"``,
    ``trust_pickle=True`` or ``--trust-pickle``. Otherwise ``UntrustedPickleError``
    names ``what`` and nothing is read.
    """
    if trusted is not True:
        raise UntrustedPickleError(
            f"{what} is a pickle, and unpickling runs code chosen by whoever wrote it, so it "
            "is refused without an explicit opt-in. If you trust it, pass --trust-pickle "
            "(Python: trust_pickle=True, or open it with backend='pickle' or "
            "serializer='pickle')"
        )
    stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    return pickle.Unpickler(stream).load()


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
        # Choosing this serializer is the opt-in: the caller asked for pickled values.
        return unpickle(data, trusted=True, what="the stored value")

    def __repr__(self) -> str:
        return f"PickleSerializer(protocol={self.protocol})"


def default_serializer() -> JsonSerializer:
    """The serializer used when none is given: JSON, decoded by orjson when it is installed."""
    return JsonSerializer() if _orjson_loads() is None else OrjsonSerializer()


_BY_NAME: dict[str, Callable[[], Serializer]] = {
    "json": default_serializer,
    "pickle": PickleSerializer,
}


def serializer_for(spec: Serializer | str | None) -> Serializer:
    """Return a serializer from an instance, a name (``"json"``, ``"pickle"``) or ``None``."""
    if spec is None:
        return default_serializer()
    if isinstance(spec, str):
        try:
            return _BY_NAME[spec]()
        except KeyError:
            raise ValueError(
                f"unknown serializer {spec!r}; use one of {sorted(_BY_NAME)} "
                "or pass an object with dumps() and loads()"
            ) from None
    if type(spec) in (JsonSerializer, OrjsonSerializer, PickleSerializer):
        return spec  # the protocol check below inspects every attribute: a fifth of open()
    if not isinstance(spec, Serializer):
        raise TypeError(
            f"serializer must have dumps() and loads() methods, not {type(spec).__name__}"
        )
    return spec
