"""Each persistdict backend against the engine under it and the peers built on that engine.

    python benchmarks/bench_engines.py                        # 100,000 keys, 5 repetitions
    python benchmarks/bench_engines.py --keys 20000 --repeat 3 --only "lmdb sync=false"
    python benchmarks/bench_engines.py --keys 1000000 --only "sync=false,redis" --memory-only

One table per engine (LMDB at sync=False and at sync=True, SQLite, Redis, PostgreSQL): the
persistdict row, the raw client doing the same work with the same codec (py-lmdb, sqlite3,
redis-py, psycopg: see the classes in subjects.py), and the peer libraries on that engine
(lmdbm at the same sync setting; sqlitedict, diskcache). Each cell is microseconds per
operation, the median of repetitions interleaved across the rows of a table; the ratio
columns divide persistdict's median by each other row's, measured in the same run.
``--memory`` adds the peak of Python allocations (tracemalloc) while iterating every key, then
every item, which must stay flat as the store grows. See README.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import UNITS, fmt, interleaved, machine_facts, make_items, measure, one_line
from subjects import Subject, engine_groups

# (column, unit): bench_backends' per-operation columns, then two of the issue's LMDB table.
WORKLOADS = [
    (name, UNITS[name])
    for name in (
        "set, each durable",
        "set, batched",
        "get",
        "in",
        "iter keys",
        "iter items",
        "len",
        "update()",
        "del, batched",
        "reopen + 1k gets",
    )
]
LOOKUPS = 20_000  # gets / lookups per repetition, at most
EACH = 2_000  # durable writes and batched deletes per repetition, at most


def run_once(subject: Subject, n: int, path: Path) -> dict[str, float]:
    """One repetition of every workload on an ``n``-key store; µs per operation by workload."""
    names = [name for name, _ in WORKLOADS]
    return measure(subject, n, path, names, lookups=LOOKUPS, each=EACH)


def iteration_memory(subject: Subject, n: int, path: Path) -> tuple[float, float]:
    """Peak MB of Python allocations while iterating all keys, then all items."""
    subject.remove(path)
    m = subject.open(path, batched=False)
    subject.update(m, dict(make_items(n)))
    peaks = []
    for walk in (subject.iter_keys, subject.iter_items):
        tracemalloc.start()
        try:
            walk(m)
            peaks.append(tracemalloc.get_traced_memory()[1] / 2**20)
        finally:
            tracemalloc.stop()
    subject.close(m)
    subject.remove(path)
    return peaks[0], peaks[1]


def render(
    title: str, n: int, rows: list[Subject], medians: dict[str, dict[str, float]]
) -> list[str]:
    ours, others = rows[0], rows[1:]
    head = ["workload", *(s.label for s in rows), *(f"÷ {s.label}" for s in others)]
    lines = [f"### {title}, {n:,} keys", "", "| " + " | ".join(head) + " |"]
    lines.append("|" + "---|" * len(head))
    for name, unit in WORKLOADS:
        cells = [f"{name} ({unit})"]
        cells += [fmt(medians[s.label][name]) for s in rows]
        mine = medians[ours.label][name]
        cells += [f"{mine / medians[s.label][name]:.2f}x" for s in others]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "What a returned write promises:", ""]
    lines += [f"- {s.label}: {s.durable_each}; batched: {s.durable_batch}" for s in rows]
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, nargs="+", default=[100_000], metavar="N")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved repetitions (median)")
    parser.add_argument("--only", default="", help="comma-separated substrings of table titles")
    parser.add_argument("--memory", action="store_true", help="also measure iteration memory")
    parser.add_argument(
        "--memory-only", action="store_true", help="measure iteration memory, not speed (1M keys)"
    )
    parser.add_argument("--dir", default=None, help="where to create the files (default: temp)")
    args = parser.parse_args(argv)
    wanted = [w.strip().lower() for w in args.only.split(",") if w.strip()]

    command = "python benchmarks/bench_engines.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    out = ["## persistdict against its engines", "", f"Command: `{command.strip()}`", ""]
    skipped: list[str] = []
    memory: list[str] = []
    with tempfile.TemporaryDirectory(prefix="pd-engines-", dir=args.dir) as tmp:
        root = Path(tmp)
        out += ["Machine:", "", *machine_facts(root), ""]
        for title, group in engine_groups():
            if wanted and not any(w in title.lower() for w in wanted):
                continue
            rows = []
            for s in group:
                reason = s.available()
                if reason is None:
                    rows.append(s)
                else:
                    skipped.append(f"- {title}: {s.label} skipped ({one_line(reason)})")
            if len(rows) < 2 or rows[0] is not group[0]:
                continue
            for n in args.keys:
                if not args.memory_only:
                    table = _measure(title, n, rows, args.repeat, root)
                    print("\n".join(table), file=sys.stderr, flush=True)  # if a later one fails
                    out += table
                if args.memory or args.memory_only:
                    for s in rows[:2]:
                        path = root / f"mem{n}" / s.label.replace(" ", "_") / f"m{s.suffix}"
                        path.parent.mkdir(parents=True, exist_ok=True)
                        keys, items = iteration_memory(s, n, path)
                        memory.append(f"| {s.label} | {n:,} | {keys:.2f} | {items:.2f} |")
    if memory:
        out += [
            "### Iteration memory",
            "",
            "Peak Python allocations (tracemalloc) while iterating every key, then every item:",
            "",
            "| | keys | iter keys (MB) | iter items (MB) |",
            "|---|---|---|---|",
            *memory,
            "",
        ]
    if skipped:
        out += ["Skipped here:", "", *skipped, ""]
    print("\n".join(out))
    return 0


def _measure(title: str, n: int, rows: list[Subject], repeat: int, root: Path) -> list[str]:
    def one(s: Subject, last: bool) -> dict[str, float]:
        folder = root / str(n) / s.label.replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        return run_once(s, n, folder / f"main{s.suffix}")

    medians = interleaved(rows, repeat, one, f"{title}, {n:,} keys")
    return render(title, n, rows, medians)


if __name__ == "__main__":
    sys.exit(main())
