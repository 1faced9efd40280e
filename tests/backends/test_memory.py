from __future__ import annotations

from pathlib import Path
from typing import Any

import persistdict
from persistdict import PersistDict
from persistdict.testing import MappingConformance


class TestMemory(MappingConformance):
    backend_name = "memory"
    persistent = False
    file_based = False

    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        return persistdict.open("memory://", **options)
