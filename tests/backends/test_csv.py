from __future__ import annotations

from pathlib import Path
from typing import Any

import persistdict
from persistdict import PersistDict
from persistdict.testing import MappingConformance


class TestCsv(MappingConformance):
    live_objects = True
    str_values_only = True
    nul_in_text = False

    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        return persistdict.open(folder / "table.csv", **options)
