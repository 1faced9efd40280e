"""Run every benchmark, print their tables, and write docs/benchmarks.md and its chart.

    python benchmarks/run_all.py                 # the full run: tens of minutes, on an idle machine
    python benchmarks/run_all.py --quick         # 1,000 keys, one repetition: a smoke run
    python benchmarks/run_all.py --keys 20000 --repeat 3 --no-page
    python benchmarks/run_all.py --replot        # redraw the chart from the page's own tables

Each benchmark runs in its own interpreter, as its command line (printed on the page) would
run it by hand: bench_backends.py (every backend, the floors, the peers; it draws the chart),
bench_engines.py (each backend against its raw engine and the peers on it, every table),
bench_snapshot_reads.py, bench_snapshot_io.py and bench_servers.py (bulk ``update()``). Their
markdown goes to stdout and, unless ``--no-page`` (or ``--only``) is given, to the page under a
short introduction, so no number on the page is typed by hand. A benchmark that fails stops
the run before the page is written. Rows whose library or server is missing are listed by
each benchmark as skipped; the Redis and PostgreSQL rows use ``PERSISTDICT_BENCH_REDIS`` and
``PERSISTDICT_BENCH_POSTGRES`` (see benchmarks/README.md), and the page says which were set.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_backends import WORKLOADS, plot

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PAGE = Path("docs") / "benchmarks.md"
IMAGE = Path("docs") / "img" / "benchmarks.png"
SERVER_VARIABLES = ("PERSISTDICT_BENCH_REDIS", "PERSISTDICT_BENCH_POSTGRES")


@dataclass(frozen=True)
class Bench:
    """One benchmark script and the sizes of a full and of a quick run."""

    name: str
    script: str
    keys: tuple[int, ...]
    repeat: int
    quick_repeat: int = 1  # samples-based scripts need a few even in a smoke run
    many_sizes: bool = True  # --keys takes several sizes (bench_servers takes one)
    takes_dir: bool = True


BENCHES = [
    Bench("backends", "bench_backends.py", (10_000, 100_000), 3),
    Bench("engines", "bench_engines.py", (100_000,), 5),
    Bench("snapshot-reads", "bench_snapshot_reads.py", (10_000, 100_000), 31, quick_repeat=3),
    Bench("snapshot-io", "bench_snapshot_io.py", (10_000, 100_000), 21, quick_repeat=3),
    Bench("servers", "bench_servers.py", (100_000,), 3, many_sizes=False, takes_dir=False),
]
QUICK_KEYS = (1_000,)

INTRO = """\
# Benchmarks

How fast each backend is, next to the floors it is built on (raw `sqlite3`, raw `json`), a
plain `dict`, and the libraries you might use instead (sqlitedict, diskcache's `Index`,
`shelve`, lmdbm), measured in one run on one machine; then each backend against the raw
engine under it (py-lmdb, `sqlite3`, redis-py, psycopg doing the same work), the snapshot
formats' reads, saves and opens against a plain `dict` and the raw `json`/`csv` code, and
bulk `update()` against the raw server clients. Each cell is the time of one operation and,
where a row has a baseline, the ratio to it from the same run. The rows also differ in what
a write promises: the tables say what, and [Guarantees](guarantees.md) says what is tested.

This page is generated: `python benchmarks/run_all.py` runs every benchmark in
`benchmarks/` and writes their output below unchanged (each section names its command), with
the chart `bench_backends.py` draws (`--plot`). `benchmarks/README.md` explains every column
and option. Absolute numbers depend on the machine (listed below); compare rows, not machines.

[![Time per operation, one panel per workload]({image})]({image})

Each panel is one workload of the first table: the time one operation takes on each row (log
scale, shorter is faster), each row labelled with what a write has promised when it returns.
Click the chart for the full-size image; the tables below hold the same numbers.
"""


def command_lines(args: argparse.Namespace, image: Path | None) -> list[tuple[Bench, list[str]]]:
    """The command line of each benchmark this run runs, in page order."""
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    unknown = wanted - {b.name for b in BENCHES}
    if unknown:
        names = ", ".join(b.name for b in BENCHES)
        raise SystemExit(f"--only: no benchmark named {', '.join(sorted(unknown))} ({names})")
    out = []
    for bench in BENCHES:
        if wanted and bench.name not in wanted:
            continue
        keys = args.keys or (QUICK_KEYS if args.quick else bench.keys)
        repeat = args.repeat or (bench.quick_repeat if args.quick else bench.repeat)
        sizes = [str(n) for n in keys] if bench.many_sizes else [str(max(keys))]
        cmd = [f"benchmarks/{bench.script}", "--keys", *sizes, "--repeat", str(repeat)]
        if args.dir and bench.takes_dir:
            cmd += ["--dir", args.dir]
        if bench.name == "backends":
            if args.quick:
                cmd.append("--memory-only-sqlite")  # one RSS child per row is most of it
            if image is not None:
                cmd += ["--plot", shown(image)]
        if bench.name == "engines" and not args.quick:
            cmd.append("--memory")
        out.append((bench, cmd))
    return out


def shown(path: Path) -> str:
    """``path`` relative to the project root if it is inside it: commands on the page name no
    personal folder."""
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def run(cmd: list[str]) -> str:
    """Run one benchmark from the project root; its progress shows, its markdown returns."""
    print("running: python", " ".join(cmd), file=sys.stderr, flush=True)
    result = subprocess.run(
        [sys.executable, *cmd], cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed (exit {result.returncode}); no page written")
    return result.stdout.strip()


def notes(load_before: float, load_after: float) -> list[str]:
    """What the page says about the run itself: servers named, how busy the machine was."""
    servers = [f"`{name}={os.environ[name]}`" for name in SERVER_VARIABLES if name in os.environ]
    out = [f"Servers for this run: {', '.join(servers)}."] if servers else []
    cores = os.cpu_count() or 1
    load = f"{load_before:.1f} when the run started and {load_after:.1f} when it ended"
    if max(load_before, load_after) > cores / 2:
        # Other work competed for the CPUs: say so next to the numbers it disturbed.
        out.append(
            f"The machine was busy with other work during this run (load average {load}, "
            f"{cores} cores): differences of a few tens of percent between rows are noise."
        )
    else:
        out.append(f"Load average {load} ({cores} cores).")
    return out


def intro(page: Path, image: Path) -> str:
    return INTRO.format(image=Path(os.path.relpath(image, page.parent)).as_posix())


def read_page(
    text: str,
) -> tuple[dict[int, dict[str, dict[str, float]]], list[str], dict[str, str]]:
    """The medians, row labels and durability promises of bench_backends' tables on a page."""
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
    # The promises table ends where the next section starts (the other benchmarks' tables).
    promised = re.split(
        r"^##", text.split("### What each row promises", 1)[-1], maxsplit=1, flags=re.M
    )[0]
    promises = {
        cells[0]: cells[1]
        for row in re.findall(r"^\| (?!---)(.+) \|$", promised, re.M)
        for cells in [[c.strip() for c in row.split(" | ")]]
        if cells[0]
    }
    if not results or set(labels) - set(promises):
        raise SystemExit("the page does not hold the tables bench_backends.py writes")
    return results, labels, promises


def replot(page: Path, image: Path) -> int:
    """Redraw the chart and the page's introduction from the numbers already on the page."""
    text = page.read_text(encoding="utf-8")
    results, labels, promises = read_page(text)
    plot(str(image), results, labels, promises)
    first_note = re.search(r"^(Servers for this run|Load average|The machine was busy)", text, re.M)
    if first_note is None:
        raise SystemExit(f"{page}: can't find where the introduction ends")
    page.write_text(intro(page, image) + "\n" + text[first_note.start() :], encoding="utf-8")
    print(f"redrew {image} and the introduction of {page} from its tables", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 keys, one repetition")
    parser.add_argument(
        "--keys", type=int, nargs="+", metavar="N", help="store sizes for every benchmark"
    )
    parser.add_argument("--repeat", type=int, help="repetitions (samples) for every benchmark")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated benchmarks to run ("
        + ", ".join(b.name for b in BENCHES)
        + "); prints them, writes no page",
    )
    parser.add_argument("--dir", help="where the benchmarks create their files (default: temp)")
    parser.add_argument("--page", type=Path, default=ROOT / PAGE, help=f"default: {PAGE}")
    parser.add_argument("--image", type=Path, default=ROOT / IMAGE, help=f"default: {IMAGE}")
    parser.add_argument("--no-page", action="store_true", help="print the tables, write nothing")
    parser.add_argument(
        "--replot", action="store_true", help="redraw the chart from the page, run nothing"
    )
    args = parser.parse_args(argv)
    page, image = args.page.resolve(), args.image.resolve()
    if args.replot:
        return replot(page, image)
    write = not (args.no_page or args.only)
    if write:
        image.parent.mkdir(parents=True, exist_ok=True)
    draw = write and importlib.util.find_spec("matplotlib") is not None
    if write and not draw:
        print(
            f"matplotlib is not installed: the tables are written, {image} is not redrawn "
            "(pip install -e '.[bench]')",
            file=sys.stderr,
        )
    load_before = os.getloadavg()[0]
    sections = [run(cmd) for _, cmd in command_lines(args, image if draw else None)]
    body = "\n\n".join(notes(load_before, os.getloadavg()[0]) + sections) + "\n"
    print(body)
    if write:
        page.write_text(intro(page, image) + "\n" + body, encoding="utf-8")
        print(f"wrote {page}" + (f" and {image}" if draw else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
