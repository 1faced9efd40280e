from __future__ import annotations

from pathlib import Path
from typing import Any

import persistdict
from persistdict import PersistDict
from persistdict.testing import MappingConformance


class TestPickle(MappingConformance):
    live_objects = True

    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        return persistdict.open(folder / "state.pkl", backend="pickle", **options)

    def unstorable(self) -> Any:
        return {"lambda": lambda: None}
