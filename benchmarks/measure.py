"""What bench_backends.py and bench_engines.py share: the data, the timer, the machine facts
and ``measure()``, the one routine that drives a :class:`~subjects.Subject` through the
workloads, so that the two scripts time every row the same way.
"""

from __future__ import annotations

import gc
import os
import platform
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from subjects import Subject

# Every workload measure() knows, in table order, with the unit of its figure.
UNITS = {
    "set, each durable": "µs/write",
    "set, batched": "µs/write",
    "get": "µs/get",
    "in": "µs/lookup",
    "iter keys": "µs/key",
    "iter items": "µs/item",
    "len": "µs/call",
    "update()": "µs/key",
    "open": "ms",
    "reopen + read all": "µs/key",
    "del, batched": "µs/key",
    "reopen + 1k gets": "ms",
}
LEN_CALLS = 1_000
REOPEN_GETS = 1_000


def make_items(n: int, seed: int = 1) -> list[tuple[str, Any]]:
    """``n`` str keys with small JSON-able dict values, in a shuffled (realistic) order."""
    items = [
        (f"key_{i}", {"index": i, "name": f"user {i}", "tags": ["a", "b"], "score": i * 0.5})
        for i in range(n)
    ]
    random.Random(seed).shuffle(items)
    return items


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds ``fn()`` took, after a garbage collection, and what it returned."""
    gc.collect()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def each_count(subject: Subject, n: int, most: int) -> int:
    """How many durable writes (and batched deletes) one repetition makes on ``subject``."""
    if subject.rewrites_whole_file:
        return min(n, max(3, min(50, 500_000 // n)))  # every write rewrites all n keys
    if subject.label.endswith(" sync"):
        return min(n, most // 10)  # every commit is fsynced: a few hundred measure it well
    return min(n, most)


def measure(
    subject: Subject,
    n: int,
    path: Path,
    workloads: Collection[str],
    *,
    lookups: int,
    each: int,
    keep: bool = False,
) -> dict[str, float]:
    """One repetition of ``workloads`` (names from ``UNITS``) on an ``n``-key store.

    Returns the figure of each workload in its unit, plus ``size`` (bytes per key on disk)
    for a persistent subject. The store the reads use is made by ``update()`` on every row,
    whether or not it is timed: on LMDB a store filled by many batches keeps a long free-page
    list that each later commit rewrites (a durable write then costs twice as much), so every
    row must share one history. The batched set fills a second, empty store. ``path`` is left
    in place with ``keep`` (for the RSS measurement), else removed.
    """
    unknown = set(workloads) - set(UNITS)
    if unknown:
        raise ValueError(f"no such workloads: {sorted(unknown)}")
    items = make_items(n)
    rng = random.Random(n)
    lookup_keys = [k for k, _ in rng.sample(items, min(n, lookups))]
    mixed = [k if i % 2 else k + "_missing" for i, k in enumerate(lookup_keys)]
    sample = rng.sample(items, each_count(subject, n, each))
    rewrite = [(k, {**v, "score": -1.0}) for k, v in sample]
    doomed = [k for k, _ in rng.sample(items, len(sample))]
    other = path.with_name(f"update{subject.suffix}")
    out: dict[str, float] = {}

    def run(name: str, work: Callable[[], Any], ops: int) -> None:
        if name in workloads:
            out[name] = timed(work)[0] * 1e6 / ops

    if "set, batched" in workloads:
        subject.remove(other)
        m = subject.open(other, batched=True)
        run("set, batched", lambda: subject.fill(m, items), n)
        subject.close(m)
        subject.remove(other)

    subject.remove(path)
    m = subject.open(path, batched=False)
    seconds = timed(lambda: subject.update(m, dict(items)))[0]
    if "update()" in workloads:
        out["update()"] = seconds * 1e6 / n
    subject.close(m)

    m = subject.open(path, batched=False)
    run("get", lambda: subject.get(m, lookup_keys), len(lookup_keys))
    run("in", lambda: subject.contains(m, mixed), len(mixed))
    run("iter keys", lambda: subject.iter_keys(m), n)
    run("iter items", lambda: subject.iter_items(m), n)
    if "len" in workloads:
        subject.length(m, 1)  # the first call after opening may count; later ones must not
    run("len", lambda: subject.length(m, LEN_CALLS), LEN_CALLS)
    run("set, each durable", lambda: subject.set_each(m, rewrite), len(rewrite))
    subject.close(m)

    if subject.persistent:
        if "open" in workloads:
            seconds, m = timed(lambda: subject.open(path, batched=False))
            out["open"] = seconds * 1e3
            subject.close(m)
        if "reopen + read all" in workloads:
            seconds, m = timed(lambda: subject.reopen_read_all(path))
            out["reopen + read all"] = seconds * 1e6 / n
            subject.close(m)
        if "reopen + 1k gets" in workloads:
            gone = set(doomed)
            gets = [k for k in lookup_keys[:REOPEN_GETS] if k not in gone]
            seconds, m = timed(lambda: subject.reopen_gets(path, gets))
            out["reopen + 1k gets"] = seconds * 1e3 * REOPEN_GETS / max(len(gets), 1)
            subject.close(m)
        size = subject.size(path)
        if size is not None:
            out["size"] = size / n
    if "del, batched" in workloads:
        m = subject.open(path, batched=True)
        run("del, batched", lambda: subject.delete_batched(m, doomed), len(doomed))
        subject.close(m)
    if not keep:
        subject.remove(path)
    return out


def interleaved(
    subjects: list[Subject],
    repeat: int,
    one: Callable[[Subject, bool], dict[str, float]],
    what: str,
) -> dict[str, dict[str, float]]:
    """The median of each figure over ``repeat`` repetitions of ``one(subject, last)``.

    Each repetition runs every subject once, starting one further along the list than the
    previous repetition, so that no row always runs first (on a warm cache or an idle CPU).
    ``last`` is true on the final repetition. Progress goes to stderr, labelled ``what``.
    """
    runs: dict[str, list[dict[str, float]]] = {s.label: [] for s in subjects}
    # timed() collects garbage before each workload; without this, each collection walks the
    # tens of thousands of objects the imported drivers own (30-50 ms here, most of a small
    # run). Frozen, they are left out of every collection, for every row alike.
    gc.freeze()
    for rep in range(repeat):
        shift = rep % len(subjects)
        for s in subjects[shift:] + subjects[:shift]:
            runs[s.label].append(one(s, rep == repeat - 1))
            print(f"  {what}, {rep + 1}/{repeat}: {s.label}", file=sys.stderr, flush=True)
    return {
        label: {k: statistics.median(r[k] for r in reps) for k in reps[0]}
        for label, reps in runs.items()
    }


def one_line(text: str) -> str:
    """``text`` with its line breaks made spaces: a driver's message can span lines, and a
    markdown list item or table cell can't."""
    return " ".join(text.split())


def fmt(value: float) -> str:
    """A figure with three significant digits or so, thousands separated."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def machine_facts(folder: Path) -> list[str]:
    """Markdown bullets naming the CPU, RAM, OS, the file system ``folder`` is on, Python,
    SQLite and the libraries measured, and the time."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    fs = "?"
    try:
        best = ""
        with open("/proc/mounts") as f:
            for line in f:
                _, mount, kind = line.split()[:3]
                if str(folder).startswith(mount) and len(mount) >= len(best):
                    best, fs = mount, kind
    except OSError:
        pass
    versions = []
    for module in ("persistdict", "orjson", "sqlitedict", "diskcache", "lmdbm", "lmdb"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except (ImportError, AttributeError):
            continue
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores, {mem:.0f} GB RAM",
        f"- OS: {platform.platform()}; files on {fs} ({folder.parent})",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"SQLite {sqlite3.sqlite_version}",
        f"- {', '.join(versions)}",
        f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
    ]
