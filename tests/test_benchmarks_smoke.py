"""Run the benchmark at a tiny size so it keeps working; its timings are not checked here."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_backends.py"
WORKLOADS = [
    "set, each durable",
    "set, batched",
    "get",
    "in",
    "iter keys",
    "iter items",
    "len",
    "update()",
    "open",
    "reopen + read all",
]


def test_benchmark_runs_and_reports_every_workload(tmp_path: Path) -> None:
    raw = tmp_path / "medians.json"
    cmd = [
        sys.executable,
        str(BENCH),
        "--keys",
        "100",
        "--repeat",
        "1",
        "--memory-only-sqlite",
        "--dir",
        str(tmp_path),
        "--json",
        str(raw),
    ]
    if importlib.util.find_spec("matplotlib") is not None:
        cmd += ["--plot", str(tmp_path / "bench.png")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr

    out = proc.stdout
    assert "### 100 keys" in out
    assert "Command: `python benchmarks/bench_backends.py --keys 100" in out
    assert "`import persistdict`" in out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    for label in ("dict", "raw sqlite3", "raw json", "**persistdict sqlite**"):
        assert label in rows, f"no {label} row in:\n{out}"
    cells = [c.strip() for c in rows["**persistdict sqlite**"].split("|")[2:-1]]
    assert len(cells) == len(WORKLOADS) + 1  # + size
    assert all(c[0].isdigit() and "x)" in c for c in cells[:-1]), cells

    medians = json.loads(raw.read_text())["100"]
    assert set(WORKLOADS) <= set(medians["persistdict sqlite"])
    assert all(v > 0 for v in medians["raw sqlite3"].values())
    assert "persistdict json" in medians
    # The RSS child ran for the sqlite rows and printed a number of MB for each.
    rss = out.split("Peak RSS growth", 1)[1].split("###", 1)[0]
    row = next(line for line in rss.splitlines() if line.startswith("| persistdict sqlite |"))
    assert row.split("|")[2].strip().replace(".", "").isdigit(), row
    # Nothing is left behind in the folder the stores were created in.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["medians.json", *(["bench.png"] if "--plot" in cmd else [])]
    )


ENGINES = BENCH.with_name("bench_engines.py")


def test_engine_benchmark_prints_persistdict_against_the_raw_engine(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ENGINES), "--keys", "100", "--repeat", "1", "--dir", str(tmp_path)]
    cmd += ["--only", "lmdb sync=false", "--memory"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr

    out = proc.stdout
    assert "### LMDB sync=False, 100 keys" in out
    assert "### LMDB sync=True" not in out  # --only picked one table
    assert "### SQLite" not in out
    head = next(line for line in out.splitlines() if line.startswith("| workload |"))
    assert "| persistdict lmdb | raw py-lmdb |" in head
    assert "÷ raw py-lmdb" in head
    rows = [line for line in out.splitlines() if line.startswith("| ") and "(µs/" in line]
    assert len(rows) == 9  # every workload but the reopen, which is in ms
    for row in rows:
        cells = [c.strip() for c in row.split("|")[2:-1]]
        assert all(c[0].isdigit() for c in cells), row
        assert cells[-1].endswith("x"), row
    assert "| persistdict lmdb | 100 |" in out  # the iteration memory table
