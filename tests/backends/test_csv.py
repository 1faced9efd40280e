from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict import PersistDict
from persistdict.testing import MappingConformance


class TestCsv(MappingConformance):
    backend_name = "csv"
    live_objects = True
    str_values_only = True
    nul_in_text = False

    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        return persistdict.open(folder / "table.csv", **options)


def test_keys_and_values_are_refused_beyond_the_csv_field_limit(tmp_path: Path) -> None:
    # The csv module reads fields of at most csv.field_size_limit() characters (131072 by
    # default): a longer key or value used to be saved and then made the file unreadable.
    limit = csv.field_size_limit()
    with persistdict.open(tmp_path / "d.csv") as d:
        d["at the limit"] = "v" * limit
        d["k" * limit] = "a key at the limit"
        for key, value in (("long value", "v" * (limit + 1)), ("k" * (limit + 1), "x")):
            with pytest.raises(ValueError, match=f"can't store key '{key[:10]}.*at most {limit}"):
                d[key] = value
            assert key not in d
    with persistdict.open(tmp_path / "d.csv", "r") as d:
        assert d["at the limit"] == "v" * limit
        assert d["k" * limit] == "a key at the limit"
        assert len(d) == 2


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", {}),
        (b"key,value\n", {}),
        (b"a,1\nb,2\n", {"a": "1", "b": "2"}),  # no header
        (b"key,value\r\na,1\r\n\r\nb,2\r\n", {"a": "1", "b": "2"}),  # a blank line
        (b'\xef\xbb\xbfkey,value\n"x\ny",2\n', {"x\ny": "2"}),  # BOM, a quoted newline
        (b"\nkey,value\na,1\n", {"key": "value", "a": "1"}),  # a header only on line 1
        (b'key,value\n"",""\n', {"": ""}),
    ],
)
def test_files_written_by_other_programs_read_as_their_rows(
    tmp_path: Path, content: bytes, expected: dict[str, str]
) -> None:
    path = tmp_path / "table.csv"
    path.write_bytes(content)
    with persistdict.open(path, "r") as d:
        assert dict(d) == expected
        assert list(d) == list(expected)


@pytest.mark.parametrize(
    ("content", "fault"),
    [
        (b'key,value\n"a\nb",1\nc,1,2\n', "line 4 has 3 fields, expected 2"),
        (b'key,value\n"a\nb",1\nc\n', "line 4 has 1 fields, expected 2"),
        (b"key,value\na,1\n\nb,2\na,3\n", "key 'a' appears on line 2 and 5"),
        (b'key,value\na,1\nb,"2\n', "line 3: unexpected end of data"),
    ],
)
def test_a_damaged_row_is_named_by_its_line(tmp_path: Path, content: bytes, fault: str) -> None:
    path = tmp_path / "table.csv"
    path.write_bytes(content)
    with pytest.raises(persistdict.CorruptError, match=fault):
        persistdict.open(path, "r")
    assert path.read_bytes() == content
