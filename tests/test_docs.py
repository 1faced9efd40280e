"""The documentation's code is run, so it can't drift from the library."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import persistdict
from persistdict import PersistDict
from persistdict.testing import MappingConformance

DOCS = Path(__file__).resolve().parents[1] / "docs"


def python_blocks(page: str) -> list[str]:
    text = (DOCS / page).read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


# The "Writing a backend" page: its FolderBackend must pass the whole conformance suite,
# exactly as the page promises a third-party author.
_namespace: dict[str, Any] = {"__name__": "docs_writing_a_backend"}
exec(python_blocks("writing-a-backend.md")[0], _namespace)  # our own docs
FolderBackend = _namespace["FolderBackend"]
if "folder" not in persistdict.backends.registry:
    persistdict.register_backend("folder", FolderBackend)


class TestDocsFolderBackend(MappingConformance):
    max_key_bytes = 127

    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        return persistdict.open(folder / "data", backend="folder", **options)


def test_the_page_registers_the_same_way_as_the_test() -> None:
    example = python_blocks("writing-a-backend.md")[1]
    assert 'persistdict.register_backend("folder", FolderBackend)' in example
    assert 'backend="folder"' in example
