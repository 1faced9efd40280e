"""Run the benchmarks at a tiny size so they keep working; their timings are not checked here."""

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


RUN_ALL = BENCH.with_name("run_all.py")
SECTIONS = [
    "## persistdict benchmark",
    "## persistdict against its engines",
    "## Snapshot reads against a plain dict",
    "## Snapshot saves and opens against the raw code",
    "## Bulk update() against the raw clients",
]


def test_one_command_runs_every_benchmark_and_writes_the_page(tmp_path: Path) -> None:
    # The page and chart go to a temp copy: docs/ holds the numbers of a full run.
    page, image, files = (
        tmp_path / "docs" / "benchmarks.md",
        tmp_path / "docs" / "img" / "b.png",
        tmp_path / "files",
    )
    files.mkdir()
    cmd = [sys.executable, str(RUN_ALL), "--quick", "--keys", "20", "--dir", str(files)]
    cmd += ["--page", str(page), "--image", str(image)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr

    text = page.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n")
    assert "[![Time per operation, one panel per workload](img/b.png)](img/b.png)" in text
    assert proc.stdout.strip() in text  # what it printed is the page's body
    where = [text.index(section) for section in SECTIONS]
    assert where == sorted(where)
    backends, engines, reads, io, servers = (
        text[start:end] for start, end in zip(where, [*where[1:], len(text)], strict=True)
    )

    assert "Command: `python benchmarks/bench_backends.py --keys 20 --repeat 1" in backends
    assert "`import persistdict`" in backends
    rows = {
        line.split("|")[1].strip(): line for line in backends.splitlines() if line.startswith("| ")
    }
    for label in ("dict", "raw sqlite3", "raw json", "**persistdict sqlite**"):
        assert label in rows, f"no {label} row in:\n{backends}"
    cells = [c.strip() for c in rows["**persistdict sqlite**"].split("|")[2:-1]]
    assert len(cells) == len(WORKLOADS) + 1  # + size
    assert all(c[0].isdigit() and "x)" in c for c in cells[:-1]), cells
    # --quick measures RSS for the sqlite rows only; the child printed a number of MB.
    rss = backends.split("Peak RSS growth", 1)[1].split("###", 1)[0]
    row = next(line for line in rss.splitlines() if line.startswith("| persistdict sqlite |"))
    assert row.split("|")[2].strip().replace(".", "").isdigit(), row

    for title in ("LMDB sync=False", "LMDB sync=True", "SQLite"):
        assert f"### {title}, 20 keys" in engines
    for server in ("Redis", "PostgreSQL"):  # a table, or the reason it was skipped
        assert f"### {server}, 20 keys" in engines or f"- {server}: " in engines
    for fmt in ("json", "csv"):
        assert f"### {fmt}, 20 keys" in reads
        assert f"| persistdict {fmt}, lock=True | " in reads
        section = io.split(f"### {fmt}: flush and open, 20 keys", 1)[1].split("###", 1)[0]
        table = [line for line in section.splitlines() if line.startswith("| ")][1:]
        assert [line.split("|")[1].strip() for line in table] == [
            "flush(), one key changed",
            "open flag='r'",
            "open flag='w'",
        ]
        assert all(line.split("|")[4].strip().endswith("x") for line in table), table
    assert "| lmdb | " in servers  # the servers' rows say "skipped: ..." without a server

    # The page's own tables redraw the chart (--replot reads them back).
    sys.path.insert(0, str(BENCH.parent))
    try:
        import run_all
    finally:
        sys.path.remove(str(BENCH.parent))
    results, labels, promises = run_all.read_page(text)
    assert set(results[20]) == set(labels)
    assert promises["persistdict json"].startswith("flush() per write")
    if importlib.util.find_spec("matplotlib") is not None:
        assert image.stat().st_size > 0
    # Nothing is left behind in the folder the stores were created in.
    assert list(files.iterdir()) == []


def test_backend_benchmark_saves_its_medians(tmp_path: Path) -> None:
    raw = tmp_path / "medians.json"
    cmd = [sys.executable, str(BENCH), "--keys", "20", "--repeat", "1", "--no-memory"]
    cmd += ["--only", "persistdict json", "--dir", str(tmp_path), "--json", str(raw)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    medians = json.loads(raw.read_text())["20"]
    assert set(medians) == {"dict", "raw sqlite3", "raw json", "persistdict json"}
    assert set(WORKLOADS) <= set(medians["persistdict json"])
    assert all(v > 0 for v in medians["raw sqlite3"].values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["medians.json"]


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
