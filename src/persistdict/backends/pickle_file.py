"""The pickle snapshot backend: any Python object, for trusted files only.

Loading a pickle runs code chosen by whoever wrote the file, so this backend is never picked
by detection: it is used only when asked for by name (``backend="pickle"``/``format="pickle"``).
"""

from __future__ import annotations

import io
import pickle
from typing import Any, ClassVar

from persistdict.backends.snapshot import SnapshotBackend
from persistdict.serializers import unpickle

__all__ = ["PickleFileBackend"]


class PickleFileBackend(SnapshotBackend):
    """A dict saved as one pickle."""

    name: ClassVar[str] = "pickle"
    format_name: ClassVar[str] = "pickle"
    protocol: ClassVar[int] = pickle.DEFAULT_PROTOCOL
    # Unpickling runs code chosen by whoever wrote the file: never detected, never trusted.
    runs_code: ClassVar[bool] = True

    def encode(self, data: dict[str, Any]) -> bytes:
        # A plain dict: the live one is a subclass, which pickle would record by name.
        return pickle.dumps(dict(data), protocol=self.protocol)

    def decode(self, raw: bytes) -> dict[str, Any]:
        stream = io.BytesIO(raw)
        try:
            # Naming this backend (or format="pickle") is the opt-in: detection never picks it.
            data = unpickle(stream, trusted=True, what=f"{self.path!r}")
        except Exception as exc:  # a broken pickle can raise almost anything
            at = stream.tell()  # how far the unpickler read: where the file broke
            raise ValueError(
                f"can't unpickle it at byte {at} ({type(exc).__name__}: {exc})"
            ) from exc
        if not isinstance(data, dict):
            raise ValueError(f"it holds a {type(data).__name__}, not a dict")
        if any(not isinstance(k, str) for k in data):
            raise ValueError("it holds a dict with non-str keys")
        return data

    def check_value(self, key: str, value: Any) -> None:
        try:
            pickle.dumps(value, protocol=self.protocol)
        except Exception as exc:
            raise TypeError(f"can't pickle the value for key {key!r}: {exc}") from exc
