from __future__ import annotations

from pathlib import Path
from typing import Any

import persistdict
from persistdict import PersistDict
from persistdict.testing import MappingConformance


class TestJson(MappingConformance):
    backend_name = "json"
    live_objects = True

    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        return persistdict.open(folder / "state.json", **options)
