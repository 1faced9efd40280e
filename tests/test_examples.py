"""The README's example runs as a user would run it, and keeps its promise across runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"


def test_quickstart_counts_grow_across_runs(tmp_path: Path) -> None:
    outputs = [
        subprocess.run(
            [sys.executable, str(EXAMPLE)], cwd=tmp_path, capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    ]
    assert "1000 users; user_7 has visited 1 time(s)" in outputs[0]
    assert "1000 users; user_7 has visited 2 time(s)" in outputs[1]
    assert "this example has run 2 time(s)" in outputs[1]
    assert json.loads((tmp_path / "quickstart.json").read_text()) == {"runs": {"count": 2}}
