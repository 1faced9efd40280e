"""The JSON snapshot backend: the file is the dict itself, one top-level key per line."""

from __future__ import annotations

import json
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Any, ClassVar

from persistdict.backends.snapshot import SnapshotBackend
from persistdict.serializers import why_not_json

__all__ = ["JsonFileBackend"]

# The C encoder JSONEncoder uses for one-shot encodes; absent on other interpreters.
_c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)


class JsonFileBackend(SnapshotBackend):
    """A dict saved as one JSON object; ``json.load`` of the file returns ``dict(d)``.

    Each top-level key sits on its own line with its value in compact form, so the file is
    easy to read and to diff, and the encoding runs in the C encoder (an ``indent`` would fall
    back to the pure-Python one).
    """

    name: ClassVar[str] = "json"
    format_name: ClassVar[str] = "JSON"
    suffixes: ClassVar[tuple[str, ...]] = (".json",)

    # NaN and Infinity are refused: json writes them as bare words that other JSON readers
    # reject. A file that holds them already (written by another program) is saved with
    # them, by the permissive pair, rather than made unsaveable.
    _encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
    # Lone surrogates ("\ud800") are valid in a Python str but not in UTF-8; such a file is
    # written with \u escapes instead, which json.load reads back to the same str.
    _ascii_encoder = json.JSONEncoder(ensure_ascii=True, allow_nan=False)
    _nan_encoders = (json.JSONEncoder(ensure_ascii=False), json.JSONEncoder(ensure_ascii=True))
    _nan_on_disk = False  # a file read held NaN or Infinity

    @staticmethod
    def sniff(head: bytes) -> bool:
        return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")

    def encode(self, data: dict[str, Any]) -> bytes:
        if not data:
            return b"{}\n"
        utf8, ascii_ = (
            self._nan_encoders if self._nan_on_disk else (self._encoder, self._ascii_encoder)
        )
        try:
            return self._text(data, utf8).encode()
        except UnicodeEncodeError:
            return self._text(data, ascii_).encode()

    @staticmethod
    def _text(data: dict[str, Any], encoder: json.JSONEncoder) -> str:
        key: Any = encode_basestring_ascii if encoder.ensure_ascii else encode_basestring
        enc: Any = encoder.encode
        if _c_make_encoder is not None:
            # Exactly encoder.encode() per value, minus its per-call setup (a quarter of a
            # flush): one C encoder, built as JSONEncoder.iterencode builds it, serves the
            # whole file; keys, always str, go straight to the string encoder as in encode().
            one_shot = _c_make_encoder(
                {} if encoder.check_circular else None,
                encoder.default,
                key,
                None,
                encoder.key_separator,
                encoder.item_separator,
                encoder.sort_keys,
                encoder.skipkeys,
                encoder.allow_nan,
            )
            join = "".join

            def enc(value: Any) -> str:
                return join(one_shot(value, 0))

        body = ",\n".join([f"  {key(k)}: {enc(v)}" for k, v in data.items()])
        return f"{{\n{body}\n}}\n"

    def decode(self, raw: bytes) -> dict[str, Any]:
        def constant(name: str) -> float:
            self._nan_on_disk = True
            return float(name)

        try:
            data = json.loads(raw, parse_constant=constant)
        except json.JSONDecodeError as exc:
            # Some of json's messages end in "at" already ("Invalid control character at").
            what = exc.msg.removesuffix(" at")
            raise ValueError(f"{what} at line {exc.lineno} column {exc.colno}") from exc
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 text at byte {exc.start}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"the top level is a JSON {type(data).__name__}, not an object")
        return data

    def check_value(self, key: str, value: Any) -> None:
        try:
            self._encoder.encode(value)
        except (TypeError, ValueError) as exc:
            raise type(exc)(
                f"can't store the value for key {key!r} as JSON: {why_not_json(exc)}"
            ) from exc
