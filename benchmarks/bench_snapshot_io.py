"""Saving and opening a snapshot dict (json, csv) against the code a careful user writes.

    python benchmarks/bench_snapshot_io.py                     # 10,000 and 100,000 keys
    python benchmarks/bench_snapshot_io.py --keys 100000 --formats json --repeat 41

``flush()`` after one key changed is timed against the raw save at the same durability: encode
the whole dict in one call (``json.dumps(data, ensure_ascii=False)``, the settings of
persistdict's encoder; ``csv.writer`` rows into a buffer), write it to a temp file in the same
folder, fsync it, ``os.replace`` it over the file and fsync the folder. Opening is timed
against loading the same file into a ``dict`` with the format's own reader (``json.load``;
``csv.reader`` into ``dict``): ``flag="r"`` opens and reads; ``flag="w"`` also takes the
writer's lock file. Each sample is one operation, samples interleaved between the two sides;
a cell is the minimum of the samples in milliseconds (``--stat median`` for the median), and
the ratio divides persistdict's figure by the raw one from the same run.

What persistdict's flush does beyond the raw save, by design: it compares the encoded bytes'
digest with the last save's (unchanged data writes nothing); it checks that no other program
changed the file since, by ``stat()`` and, as its own last save is always too recent for the
file's timestamps to tell a second write in the same tick, by reading the file back and
comparing digests; it keeps the previous version as a hard link (``.<name>.persistdict-prev``)
and the file's permission bits. The json file has one top-level key per line, so its values
are encoded one call each rather than in one ``json.dumps``.
"""

from __future__ import annotations

import argparse
import csv
import gc
import io
import json
import os
import random
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_snapshot_reads import load_plain, sample_value

import persistdict


def _encode_plain(fmt: str, data: dict[str, Any]) -> bytes:
    if fmt == "json":
        return json.dumps(data, ensure_ascii=False).encode()
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(["key", "value"])
    writer.writerows(data.items())
    return out.getvalue().encode()


def save_plain(fmt: str, data: dict[str, Any], path: Path) -> None:
    """The raw atomic, durable save: temp file, fsync, ``os.replace``, fsync of the folder."""
    raw = _encode_plain(fmt, data)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _changed(fmt: str, i: int, rep: int) -> Any:
    """A new value for key ``i`` that differs at every repetition, so each flush writes."""
    value = sample_value(fmt, i)
    return f"{value} {rep}" if fmt == "csv" else {**value, "score": -float(rep)}


def run(
    fmt: str, n: int, repeat: int, folder: Path, stat: Callable[[list[float]], float]
) -> list[str]:
    data = {f"key_{i}": sample_value(fmt, i) for i in random.Random(n).sample(range(n), n)}
    stored = folder / f"open-{n}.{fmt}"
    with persistdict.open(stored, "n") as d:
        d.update(data)
    raw_path = folder / f"raw-{n}.{fmt}"
    save_plain(fmt, data, raw_path)
    plain = load_plain(fmt, stored)
    writer = persistdict.open(folder / f"flush-{n}.{fmt}", "n")
    writer.update(data)
    writer.flush()
    changed = f"key_{n // 2}"

    def pd_flush(rep: int) -> float:
        writer[changed] = _changed(fmt, n // 2, rep)
        return _time(writer.flush)

    def raw_save(rep: int) -> float:
        plain[changed] = _changed(fmt, n // 2, rep)
        return _time(lambda: save_plain(fmt, plain, raw_path))

    def pd_open(flag: str) -> Callable[[int], float]:
        def sample(rep: int) -> float:
            seconds, d = _timed(lambda: persistdict.open(stored, flag))
            d.close()  # nothing changed: writes nothing
            return seconds

        return sample

    def raw_load(rep: int) -> float:
        return _timed(lambda: load_plain(fmt, stored))[0]

    # (workload, persistdict's sample, the raw sample); a sample returns seconds.
    workloads: list[tuple[str, Callable[[int], float], Callable[[int], float]]] = [
        ("flush(), one key changed", pd_flush, raw_save),
        ("open flag='r'", pd_open("r"), raw_load),
        ("open flag='w'", pd_open("w"), raw_load),
    ]
    samples: dict[tuple[str, str], list[float]] = {}
    try:
        for rep in range(repeat):
            for name, ours, theirs in workloads:
                sides = [("persistdict", ours), ("raw", theirs)]
                for side, sample in sides if rep % 2 else sides[::-1]:  # interleave
                    samples.setdefault((name, side), []).append(sample(rep) * 1e3)
    finally:
        writer.close()
    mine = f"persistdict {fmt}"
    reader = "json.load" if fmt == "json" else "csv.reader"
    out = [
        f"### {fmt}: flush and open, {n:,} keys",
        "",
        f"| workload | {mine} (ms) | raw (ms) | ÷ raw |",
        "|---|---|---|---|",
    ]
    for name, _, _ in workloads:
        ours_ms, raw_ms = stat(samples[(name, "persistdict")]), stat(samples[(name, "raw")])
        out.append(f"| {name} | {ours_ms:.3f} | {raw_ms:.3f} | {ours_ms / raw_ms:.2f}x |")
    out += [
        "",
        f"Raw: flush is the encode + temp file + fsync + `os.replace` + folder fsync above; "
        f"both opens are `{reader}` of the same file into a `dict`.",
        "",
    ]
    return out


def _time(fn: Callable[[], Any]) -> float:
    return _timed(fn)[0]


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, nargs="+", default=[10_000, 100_000], metavar="N")
    parser.add_argument("--formats", nargs="+", default=["json", "csv"], choices=["json", "csv"])
    parser.add_argument("--repeat", type=int, default=21, help="samples per cell")
    parser.add_argument("--stat", choices=["min", "median"], default="min")
    parser.add_argument("--dir", default=None, help="where to create the files (default: temp)")
    args = parser.parse_args(argv)
    command = "python benchmarks/bench_snapshot_io.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    out = [
        "## Snapshot saves and opens against the raw code",
        "",
        f"Command: `{command.strip()}`",
        "",
    ]
    stat: Callable[[list[float]], float] = min if args.stat == "min" else statistics.median
    with tempfile.TemporaryDirectory(prefix="pd-snapio-", dir=args.dir) as tmp:
        for fmt in args.formats:
            for n in args.keys:
                out += run(fmt, n, args.repeat, Path(tmp), stat)
                print(f"  snapshot io: {fmt}, {n:,} keys done", file=sys.stderr, flush=True)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
