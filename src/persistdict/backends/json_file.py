"""The JSON snapshot backend: the file is the dict itself, one top-level key per line."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from persistdict.backends.snapshot import SnapshotBackend

__all__ = ["JsonFileBackend"]


class JsonFileBackend(SnapshotBackend):
    """A dict saved as one JSON object; ``json.load`` of the file returns ``dict(d)``.

    Each top-level key sits on its own line with its value in compact form, so the file is
    easy to read and to diff, and the encoding runs in the C encoder (an ``indent`` would fall
    back to the pure-Python one).
    """

    name: ClassVar[str] = "json"
    format_name: ClassVar[str] = "JSON"
    suffixes: ClassVar[tuple[str, ...]] = (".json",)

    _encoder = json.JSONEncoder(ensure_ascii=False)
    # Lone surrogates ("\ud800") are valid in a Python str but not in UTF-8; such a file is
    # written with \u escapes instead, which json.load reads back to the same str.
    _ascii_encoder = json.JSONEncoder(ensure_ascii=True)

    @staticmethod
    def sniff(head: bytes) -> bool:
        return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")

    def encode(self, data: dict[str, Any]) -> bytes:
        if not data:
            return b"{}\n"
        try:
            return self._text(data, self._encoder).encode()
        except UnicodeEncodeError:
            return self._text(data, self._ascii_encoder).encode()

    @staticmethod
    def _text(data: dict[str, Any], encoder: json.JSONEncoder) -> str:
        enc = encoder.encode
        body = ",\n".join([f"  {enc(k)}: {enc(v)}" for k, v in data.items()])
        return f"{{\n{body}\n}}\n"

    def decode(self, raw: bytes) -> dict[str, Any]:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from exc
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 text at byte {exc.start}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"the top level is a JSON {type(data).__name__}, not an object")
        return data

    def check_value(self, key: str, value: Any) -> None:
        try:
            self._encoder.encode(value)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"can't store the value for key {key!r} as JSON: {exc}") from exc
