"""MkDocs hook: publish the test files under tests/ with the site.

The Guarantees page links every claim to the test that checks it
(``tests/durability/test_kill.py#test_name[param]``); with the files published those links
open the test, and ``mkdocs build --strict`` fails when a linked file is gone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files


def on_files(files: Files, config: Any) -> Files:
    root = Path(config.config_file_path).resolve().parent
    for path in sorted((root / "tests").rglob("*.py")):
        files.append(
            File(
                path.relative_to(root).as_posix(),
                src_dir=str(root),
                dest_dir=config.site_dir,
                use_directory_urls=config.use_directory_urls,
            )
        )
    return files
