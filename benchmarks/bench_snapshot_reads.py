"""Reads of a snapshot dict (json, csv) against a plain ``dict`` holding the same data.

    python benchmarks/bench_snapshot_reads.py                       # 10,000 and 100,000 keys
    python benchmarks/bench_snapshot_reads.py --keys 100000 --formats json --repeat 51

The file is written once; the baseline is a ``dict`` loaded from it by the format's own reader
(``json.load``; ``csv.reader``), so both sides hold the same objects in the same order. Each
sample is one short burst of a workload (``d[k]`` and ``k in d`` over up to 20,000 random keys,
half of the ``in`` keys missing; one pass of ``for k in d`` / ``for k, v in d.items()``; 1,000
``len(d)`` calls), samples interleaved across the rows; a cell is the minimum of the samples
in µs per operation (``--stat median`` for the median), with the ratio to the dict's figure in
the same run. Other jobs on the machine only ever add time to a sample, so on a busy machine
the minimum of many short samples is the steady figure; the median moves by 2x there.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import random
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import persistdict

LOOKUPS = 20_000
LEN_CALLS = 1_000


def sample_value(fmt: str, i: int) -> Any:
    if fmt == "csv":
        return f"user {i}"
    return {"index": i, "name": f"user {i}", "tags": ["a", "b"], "score": i * 0.5}


def load_plain(fmt: str, path: Path) -> dict[str, Any]:
    if fmt == "json":
        with open(path, "rb") as f:
            data: dict[str, Any] = json.load(f)
        return data
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        next(rows)  # the key,value header
        return dict((k, v) for k, v in rows)


def _workloads(n: int, rng: random.Random) -> list[tuple[str, Callable[[Any], None], int]]:
    keys = [f"key_{i}" for i in rng.sample(range(n), min(n, LOOKUPS))]
    mixed = [k if i % 2 else k + "_missing" for i, k in enumerate(keys)]

    def get(m: Any) -> None:
        for k in keys:
            m[k]

    def get_method(m: Any) -> None:
        g = m.get
        for k in keys:
            g(k)

    def contains(m: Any) -> None:
        for k in mixed:
            k in m  # noqa: B015 - the lookup is the work being timed

    def iter_keys(m: Any) -> None:
        for _ in m:
            pass

    def iter_items(m: Any) -> None:
        for _ in m.items():
            pass

    def length(m: Any) -> None:
        for _ in range(LEN_CALLS):
            len(m)

    return [
        ("get", get, len(keys)),
        ("get()", get_method, len(keys)),
        ("in", contains, len(mixed)),
        ("iter keys", iter_keys, n),
        ("iter items", iter_items, n),
        ("len", length, LEN_CALLS),
    ]


def run(
    fmt: str, n: int, repeat: int, folder: Path, stat: Callable[[list[float]], float]
) -> list[str]:
    path = folder / f"reads-{n}.{fmt}"
    with persistdict.open(path, "n") as d:
        d.update({f"key_{i}": sample_value(fmt, i) for i in random.Random(n).sample(range(n), n)})
    rows: list[tuple[str, Any]] = [("dict", load_plain(fmt, path))]
    for lock in (True, False):
        rows.append((f"persistdict {fmt}, lock={lock}", persistdict.open(path, "r", lock=lock)))
    workloads = _workloads(n, random.Random(n + 1))
    samples: dict[tuple[str, str], list[float]] = {}
    try:
        for rep in range(repeat):
            for name, work, ops in workloads:
                shift = rep % len(rows)
                for label, m in rows[shift:] + rows[:shift]:
                    gc.collect()
                    start = time.perf_counter()
                    work(m)
                    seconds = time.perf_counter() - start
                    samples.setdefault((label, name), []).append(seconds * 1e6 / ops)
    finally:
        for _, m in rows[1:]:
            m.close()
    names = [name for name, _, _ in workloads]
    out = [
        f"### {fmt}, {n:,} keys",
        "",
        "| | " + " | ".join(f"{name} (µs/op)" for name in names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    base = {name: stat(samples[("dict", name)]) for name in names}
    for label, _ in rows:
        cells = []
        for name in names:
            figure = stat(samples[(label, name)])
            ratio = "" if label == "dict" else f" ({figure / base[name]:.2f}x)"
            cells.append(f"{figure:.4f}{ratio}")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return [*out, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, nargs="+", default=[10_000, 100_000], metavar="N")
    parser.add_argument("--formats", nargs="+", default=["json", "csv"], choices=["json", "csv"])
    parser.add_argument("--repeat", type=int, default=31, help="samples per cell")
    parser.add_argument("--stat", choices=["min", "median"], default="min")
    parser.add_argument("--dir", default=None, help="where to create the files (default: temp)")
    args = parser.parse_args(argv)
    command = "python benchmarks/bench_snapshot_reads.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    out = ["## Snapshot reads against a plain dict", "", f"Command: `{command.strip()}`", ""]
    stat: Callable[[list[float]], float] = min if args.stat == "min" else statistics.median
    with tempfile.TemporaryDirectory(prefix="pd-reads-", dir=args.dir) as tmp:
        for fmt in args.formats:
            for n in args.keys:
                out += run(fmt, n, args.repeat, Path(tmp), stat)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
