from __future__ import annotations

from pathlib import Path
from typing import Any

import persistdict
from persistdict import PersistDict
from persistdict.testing import MappingConformance


class TestSqlite(MappingConformance):
    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        return persistdict.open(folder / "data.db", **options)


class TestSqliteBatched(MappingConformance):
    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        return persistdict.open(folder / "data.db", table="batched", commit_every=7, **options)
