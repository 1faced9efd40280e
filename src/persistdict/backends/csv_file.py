"""The CSV snapshot backend: ``key,value`` rows of strings, for spreadsheets."""

from __future__ import annotations

import csv
import io
from typing import Any, ClassVar

from persistdict.backends.snapshot import SnapshotBackend

__all__ = ["CsvFileBackend"]

HEADER = ["key", "value"]


class CsvFileBackend(SnapshotBackend):
    """A dict of ``str`` values saved as a two-column CSV file (Excel dialect, UTF-8).

    Files we write start with a ``key,value`` header row; files without one read the same.
    A key that appears twice is reported as corruption rather than silently dropping a row.
    """

    name: ClassVar[str] = "csv"
    format_name: ClassVar[str] = "CSV"
    suffixes: ClassVar[tuple[str, ...]] = (".csv",)

    def encode(self, data: dict[str, Any]) -> bytes:
        out = io.StringIO(newline="")
        writer = csv.writer(out)
        writer.writerow(HEADER)
        writer.writerows(data.items())
        return out.getvalue().encode("utf-8")

    def decode(self, raw: bytes) -> dict[str, Any]:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 text at byte {exc.start}") from exc
        # A text file never holds NUL; a run of them is the zero-filled tail a crash can leave
        # in a file written without fsync (by another program), so it is damage, not data.
        nul = text.find("\0")
        if nul >= 0:
            line = text.count("\n", 0, nul) + 1
            raise ValueError(f"a NUL byte on line {line} (a zero-filled or binary file)")
        # The common case, a well-formed file, in C: read every row, build the dict in one
        # call, and count. Anything else (a blank line, a row of the wrong width, a key twice,
        # a csv error) is parsed again row by row below, to say on which line it is.
        try:
            rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
        except csv.Error:
            rows = []
        else:
            if rows and rows[0] == HEADER:
                del rows[0]
            try:
                whole = dict(rows)
            except ValueError:  # a row that is not two fields
                pass
            else:
                if len(whole) == len(rows):
                    return whole
        return self._decode_rows(text)

    @staticmethod
    def _decode_rows(text: str) -> dict[str, Any]:
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        data: dict[str, str] = {}
        first_line: dict[str, int] = {}
        try:
            for row in reader:
                line = reader.line_num
                if line == 1 and row == HEADER:
                    continue
                if not row:
                    continue
                if len(row) != 2:
                    raise ValueError(f"line {line} has {len(row)} fields, expected 2 (key,value)")
                key, value = row
                if key in data:
                    raise ValueError(f"key {key!r} appears on line {first_line[key]} and {line}")
                data[key] = value
                first_line[key] = line
        except csv.Error as exc:
            raise ValueError(f"line {reader.line_num}: {exc}") from exc
        return data

    def check_value(self, key: str, value: Any) -> None:
        if not isinstance(value, str):
            wrong = (
                f"the csv backend stores str values only; key {key!r} got {type(value).__name__}"
            )
            error = TypeError(f"{wrong}. Convert it with str() or use the json backend")
            error.cli_message = (  # type: ignore[attr-defined]
                f"{wrong}. Pass --text to store VALUE as it is typed, give a JSON string "
                """('"42"'), or use a .json file"""
            )
            raise error
        for text in (key, value):
            if "\0" in text:
                raise ValueError(
                    f"can't store key {key!r} in a CSV file: it holds a NUL character, which "
                    "text files can't. Use the json or sqlite backend"
                )
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(
                    f"can't store key {key!r} in a UTF-8 CSV file: {exc.reason} at "
                    f"position {exc.start}"
                ) from None
        # The csv module refuses to read a field longer than this (131072 characters unless
        # the program raised it), so a longer one would be saved and the file then unreadable.
        limit = csv.field_size_limit()
        for part, text in (("key", key), ("value", value)):
            if len(text) > limit:
                raise ValueError(
                    f"can't store key {key[:60]!r}: its {part} is {len(text)} characters and "
                    f"the csv module reads fields of at most {limit}. Use the json or sqlite "
                    "backend for large keys and values"
                )
