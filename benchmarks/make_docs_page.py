"""Write docs/benchmarks.md and its plot from one run of bench_backends.py.

The page is the benchmark's own output (its tables, the machine facts and the exact command),
under a short introduction, with the bar chart the benchmark draws itself (``--plot``). No
number on the page is typed by hand: to refresh it, run this script again::

    python benchmarks/make_docs_page.py                  # 10,000 keys, a minute or two
    python benchmarks/make_docs_page.py --keys 10000 100000
    python benchmarks/make_docs_page.py --replot         # redraw from the page's own tables

The Redis and PostgreSQL rows use the servers named by ``PERSISTDICT_BENCH_REDIS`` and
``PERSISTDICT_BENCH_POSTGRES`` (see benchmarks/README.md); the page says which were set.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_backends import WORKLOADS, plot

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path("benchmarks") / "bench_backends.py"
PAGE = Path("docs") / "benchmarks.md"
IMAGE = Path("docs") / "img" / "benchmarks.png"
SERVER_VARIABLES = ("PERSISTDICT_BENCH_REDIS", "PERSISTDICT_BENCH_POSTGRES")

INTRO = """\
# Benchmarks

How fast each backend is, next to the floors it is built on (raw `sqlite3`, raw `json`), a
plain `dict`, and the libraries you might use instead (sqlitedict, diskcache's `Index`,
`shelve`, lmdbm), measured in one run on one machine. Each cell is microseconds per
operation (median of the repetitions) and, in parentheses, the ratio to the row's baseline
from the same run. The rows also differ in what a write promises: the last table says what,
and [Guarantees](guarantees.md) says what is tested.

This page is generated: `python benchmarks/make_docs_page.py` runs
`benchmarks/bench_backends.py` and writes its output below unchanged, with the chart the
benchmark draws (`--plot`). `benchmarks/README.md` explains every column and option.
Absolute numbers depend on the machine (listed below); compare rows, not machines.

[![Time per operation, one panel per workload](img/benchmarks.png)](img/benchmarks.png)

Each panel is one workload: the time one operation takes on each row (log scale, shorter is
faster), each row labelled with what a write has promised when it returns. Click the chart
for the full-size image; the tables below hold the same numbers.
"""


def read_page(
    text: str,
) -> tuple[dict[int, dict[str, dict[str, float]]], list[str], dict[str, str]]:
    """The medians, row labels and durability promises that a generated page shows."""
    results: dict[int, dict[str, dict[str, float]]] = {}
    labels: list[str] = []
    for size, table in re.findall(r"^### ([\d,]+) keys\n\n((?:\|.*\n)+)", text, re.M):
        head, _, *rows = table.splitlines()
        columns = [c.strip().rsplit(" (", 1)[0] for c in head.strip("|").split("|")]
        medians: dict[str, dict[str, float]] = {}
        for row in rows:
            cells = [c.strip() for c in row.strip("|").split("|")]
            label = cells[0].strip("*")
            medians[label] = {
                column: float(cell.split(" (")[0].replace(",", ""))
                for column, cell in zip(columns[1:], cells[1:], strict=True)
                if column in dict(WORKLOADS) and cell != "n/a"
            }
        results[int(size.replace(",", ""))] = medians
        labels = list(medians)
    promised = text.split("### What each row promises", 1)[1]
    promises = {
        cells[0]: cells[1]
        for row in re.findall(r"^\| (?!---)(.+) \|$", promised, re.M)
        for cells in [[c.strip() for c in row.split(" | ")]]
        if cells[0]
    }
    if not results or set(labels) - set(promises):
        raise SystemExit(f"{PAGE} does not hold the tables this script writes")
    return results, labels, promises


def replot() -> int:
    """Redraw the chart and the page's introduction from the numbers already on the page."""
    text = (ROOT / PAGE).read_text(encoding="utf-8")
    results, labels, promises = read_page(text)
    plot(str(ROOT / IMAGE), results, labels, promises)
    first_note = re.search(r"^(Servers for this run|Load average|The machine was busy)", text, re.M)
    if first_note is None:
        raise SystemExit(f"{PAGE}: can't find where the introduction ends")
    (ROOT / PAGE).write_text(INTRO + "\n" + text[first_note.start() :], encoding="utf-8")
    print(f"redrew {IMAGE} and the introduction of {PAGE} from its tables", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--keys", nargs="+", default=["10000"], metavar="N", help="store sizes (default 10000)"
    )
    parser.add_argument("--repeat", default="3", help="repetitions (median; default 3)")
    parser.add_argument(
        "--replot", action="store_true", help="redraw the chart from the page, run nothing"
    )
    args = parser.parse_args(argv)
    if args.replot:
        return replot()

    (ROOT / IMAGE).parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        str(BENCH),
        "--keys",
        *args.keys,
        "--repeat",
        args.repeat,
        "--plot",
        str(IMAGE),
    ]
    print("running:", " ".join(command[1:]), file=sys.stderr)
    load_before = os.getloadavg()[0]
    # The benchmark's progress goes to stderr (shown); its markdown report to stdout.
    result = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        print(f"bench_backends.py failed (exit {result.returncode}); page not written")
        return result.returncode
    load_after = os.getloadavg()[0]
    servers = [f"`{name}={os.environ[name]}`" for name in SERVER_VARIABLES if name in os.environ]
    notes = [f"Servers for this run: {', '.join(servers)}."] if servers else []
    cores = os.cpu_count() or 1
    load = f"{load_before:.1f} when the run started and {load_after:.1f} when it ended"
    if max(load_before, load_after) > cores / 2:
        # Other work competed for the CPUs: say so next to the numbers it disturbed.
        notes.append(
            f"The machine was busy with other work during this run (load average {load}, "
            f"{cores} cores): differences of a few tens of percent between rows are noise."
        )
    else:
        notes.append(f"Load average {load} ({cores} cores).")
    page = INTRO + "\n" + "\n\n".join(notes) + "\n\n" + result.stdout.strip() + "\n"
    (ROOT / PAGE).write_text(page, encoding="utf-8")
    print(f"wrote {PAGE} and {IMAGE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
