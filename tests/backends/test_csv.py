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
