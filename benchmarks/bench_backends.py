"""Benchmark persistdict's backends against raw sqlite3/json, a plain dict and peer libraries.

    python benchmarks/bench_backends.py                 # 10k keys, quick
    python benchmarks/bench_backends.py --keys 10000 100000 1000000 --plot bench.png

Prints a markdown table (microseconds per operation, median of interleaved repetitions, and
the ratio to the row's baseline measured in the same run), the durability each row promises,
peak RSS growth while iterating, import times, the machine and the command. See README.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import shlex
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from subjects import Subject, all_subjects

# (column, unit) in table order; "per" says what one operation is.
WORKLOADS = [
    ("set, each durable", "µs/write"),
    ("set, batched", "µs/write"),
    ("get", "µs/get"),
    ("in", "µs/lookup"),
    ("iter keys", "µs/key"),
    ("iter items", "µs/item"),
    ("len", "µs/call"),
    ("update()", "µs/key"),
    ("open", "ms"),
    ("reopen + read all", "µs/key"),
]
LOOKUPS = 100_000  # random gets / lookups per repetition, at most
LEN_CALLS = 1_000
EACH_WRITES = 2_000  # per-write-durable writes per repetition, at most


def make_items(n: int, seed: int = 1) -> list[tuple[str, Any]]:
    """``n`` str keys with small JSON-able dict values, in a shuffled (realistic) order."""
    items = [
        (f"key_{i}", {"index": i, "name": f"user {i}", "tags": ["a", "b"], "score": i * 0.5})
        for i in range(n)
    ]
    random.Random(seed).shuffle(items)
    return items


def each_sample(subject: Subject, n: int) -> int:
    if subject.rewrites_whole_file:
        return max(3, min(50, 500_000 // n))  # every write rewrites all n keys
    return min(n, EACH_WRITES)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main_path(root: Path, n: int, subject: Subject) -> Path:
    """Where ``subject`` keeps its ``n``-key store (kept after the last repetition for RSS)."""
    folder = root / str(n) / subject.label.replace(" ", "_")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"main{subject.suffix}"


def run_once(subject: Subject, n: int, path: Path, keep: bool) -> dict[str, float]:
    """One repetition of every workload; returns µs per operation by workload."""
    items = make_items(n)
    rng = random.Random(n)
    lookups = [k for k, _ in rng.sample(items, min(n, LOOKUPS))]
    mixed = [k if i % 2 else k + "_missing" for i, k in enumerate(lookups)]
    rewrite = [(k, {**v, "score": -1.0}) for k, v in rng.sample(items, each_sample(subject, n))]
    other = path.with_name(f"update{subject.suffix}")
    us: dict[str, float] = {}

    def per_op(name: str, seconds: float, ops: int) -> None:
        us[name] = seconds * 1e6 / ops

    subject.remove(path)
    m = subject.open(path, batched=True)
    per_op("set, batched", timed(lambda: subject.fill(m, items))[0], n)
    subject.close(m)

    subject.remove(other)
    m2 = subject.open(other, batched=False)
    per_op("update()", timed(lambda: subject.update(m2, dict(items)))[0], n)
    subject.close(m2)
    subject.remove(other)

    m = subject.open(path, batched=False)
    per_op("get", timed(lambda: subject.get(m, lookups))[0], len(lookups))
    per_op("in", timed(lambda: subject.contains(m, mixed))[0], len(mixed))
    per_op("iter keys", timed(lambda: subject.iter_keys(m))[0], n)
    per_op("iter items", timed(lambda: subject.iter_items(m))[0], n)
    subject.length(m, 1)  # the first call after opening may count; later ones must not
    per_op("len", timed(lambda: subject.length(m, LEN_CALLS))[0], LEN_CALLS)
    per_op("set, each durable", timed(lambda: subject.set_each(m, rewrite))[0], len(rewrite))
    subject.close(m)

    if subject.persistent:
        seconds, m = timed(lambda: subject.open(path, batched=False))
        us["open"] = seconds * 1e3
        subject.close(m)
        seconds, m = timed(lambda: subject.reopen_read_all(path))
        per_op("reopen + read all", seconds, n)
        subject.close(m)
        size = subject.size(path)
        if size is not None:
            us["size"] = size / n
    if not keep:
        subject.remove(path)
    return us


def rss_child(label: str, path: str) -> None:
    """Internal: open ``path`` with subject ``label``, iterate it, print peak RSS growth."""
    subject = next(s for s in all_subjects() if s.label == label)
    gc.collect()
    # ru_maxrss would report the forking parent's size; VmHWM is this process's own peak, and
    # writing 5 to clear_refs resets it to the current RSS.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kb("VmRSS")
    m = subject.open(Path(path), batched=False)
    subject.iter_keys(m)
    keys_peak = _status_kb("VmHWM")
    subject.iter_items(m)
    items_peak = _status_kb("VmHWM")
    subject.close(m)
    print(json.dumps({"keys": (keys_peak - before) * 1024, "items": (items_peak - before) * 1024}))


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1])


def measure_rss(subject: Subject, path: Path) -> dict[str, int] | str:
    cmd = [sys.executable, __file__, "--rss-child", subject.label, str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0:
        return f"failed: {proc.stderr.strip().splitlines()[-1:]}"
    result: dict[str, int] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def import_times(repeat: int) -> dict[str, float]:
    """Median milliseconds of a fresh interpreter's import, for persistdict and the stdlib."""
    out: dict[str, float] = {}
    for stmt in ("import json, sqlite3", "import persistdict"):
        code = f"import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"
        samples = [
            float(
                subprocess.run(
                    [sys.executable, "-c", code], capture_output=True, text=True, check=True
                ).stdout
            )
            for _ in range(max(repeat, 5))
        ]
        out[stmt] = statistics.median(samples) * 1e3
    return out


def machine_facts(folder: Path) -> list[str]:
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


def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render(
    n: int,
    subjects: list[Subject],
    medians: dict[str, dict[str, float]],
    rss: dict[str, dict[str, int] | str],
) -> list[str]:
    lines = [f"### {n:,} keys", ""]
    head = ["", *(f"{name} ({unit})" for name, unit in WORKLOADS), "size (B/key)"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in subjects:
        row = medians[s.label]
        base = medians.get(s.baseline, {})
        cells = [f"**{s.label}**" if s.label.startswith("persistdict") else s.label]
        for name, _ in WORKLOADS:
            if name not in row:
                cells.append("n/a")
                continue
            cell = fmt(row[name])
            if s.baseline != s.label and base.get(name):
                cell += f" ({row[name] / base[name]:.2f}x)"
            cells.append(cell)
        cells.append(fmt(row["size"]) if "size" in row else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Ratios in parentheses are to the row's baseline: `raw sqlite3` for per-key stores, "
        "`raw json` for the JSON file. Lower is better.",
    ]
    if rss:
        lines += [
            "",
            f"Peak RSS growth from before open() through iterating all {n:,} keys, then all "
            "items (fresh process):",
            "",
            "| | keys (MB) | items (MB) |",
            "|---|---|---|",
        ]
        for label, got in rss.items():
            if isinstance(got, str):
                lines.append(f"| {label} | {got} | |")
            else:
                lines.append(
                    f"| {label} | {got['keys'] / 2**20:.1f} | {got['items'] / 2**20:.1f} |"
                )
    return [*lines, ""]


def durability_table(subjects: list[Subject]) -> list[str]:
    lines = [
        "### What each row promises",
        "",
        "| | set, each durable | set, batched | values stored as | baseline |",
        "|---|---|---|---|---|",
    ]
    for s in subjects:
        lines.append(
            f"| {s.label} | {s.durable_each} | {s.durable_batch} | {s.encoding} | {s.baseline} |"
        )
    return [*lines, ""]


def durability_tag(promise: str) -> str:
    """A few words for the chart from a row's "set, each durable" promise."""
    text = promise.lower()
    if "memory only" in text:
        return "memory only"
    if "server" in text:
        return "server's fsync setting"
    if "not fsynced" in text or "sync=false" in text or "synchronous=normal" in text:
        return "no fsync per write"
    if "not atomic" in text:
        return "fsynced, not atomic"
    if "fsync" in text:
        return "fsynced"
    raise ValueError(f"no durability tag for {promise!r}: add a rule to durability_tag()")


def plot(
    path: str,
    results: dict[int, dict[str, dict[str, float]]],
    labels: list[str],
    promises: dict[str, str],
) -> None:
    """Draw one small panel per workload for the largest size run: a horizontal bar per row
    (log scale, shorter is faster), each row labelled with what its durable write promises.
    Grey rows are the floors, blue persistdict, orange the other libraries."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    n = max(results)
    medians = results[n]
    names = [f"{label}  ({durability_tag(promises[label])})" for label in labels]
    kinds = {"floor": "#8c8c8c", "persistdict": "#1f5fa8", "other library": "#e07b00"}

    def kind(label: str) -> str:
        if label in ("dict", "raw sqlite3", "raw json"):
            return "floor"
        return "persistdict" if label.startswith("persistdict") else "other library"

    columns = 2
    rows = -(-len(WORKLOADS) // columns)
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(9.5, 0.19 * len(labels) * rows + 1.2),
        sharey=True,
        squeeze=False,
    )
    ys = list(range(len(labels)))
    for ax, (workload, unit) in zip(axes.flat, WORKLOADS, strict=False):
        shown = [
            (y, medians[label][workload])
            for y, label in zip(ys, labels, strict=True)
            if medians.get(label, {}).get(workload)
        ]
        ax.barh(
            [y for y, _ in shown],
            [v for _, v in shown],
            height=0.7,
            color=[kinds[kind(labels[y])] for y, _ in shown],
        )
        ax.set_xscale("log")
        low, high = min(v for _, v in shown), max(v for _, v in shown)
        ax.set_xlim(low / 2, high * 12)  # room for the value printed after each bar
        for y, v in shown:
            ax.text(v * 1.1, y, f"{v:,.0f}" if v >= 100 else f"{v:.3g}", va="center", fontsize=7)
        ax.set_title(f"{workload} ({unit}, log scale)", fontsize=10, loc="left")
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    for ax in axes.flat[len(WORKLOADS) :]:
        ax.set_visible(False)
    axes[0, 0].set_yticks(ys, names)
    axes[0, 0].invert_yaxis()
    for ax in axes[:, 0]:
        ax.tick_params(axis="y", labelsize=8)
    fig.legend(
        handles=[Patch(color=c, label=k) for k, c in kinds.items()],
        loc="upper right",
        ncol=3,
        fontsize=9,
        frameon=False,
    )
    fig.suptitle(
        f"{n:,} keys: time per operation, shorter is faster", x=0.01, ha="left", fontsize=11
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--keys",
        type=int,
        nargs="+",
        default=[10_000],
        metavar="N",
        help="store sizes to run (default: 10000; the issue's: 10000 100000 1000000)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repetitions (median)")
    parser.add_argument("--only", default="", help="comma-separated substrings of row labels")
    parser.add_argument("--no-memory", action="store_true", help="skip the RSS measurement")
    parser.add_argument(
        "--memory-only-sqlite",
        action="store_true",
        help="measure RSS for sqlite rows only (the 1M run's slow part)",
    )
    parser.add_argument("--dir", default=None, help="where to create the files (default: temp)")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw a bar chart (matplotlib)")
    parser.add_argument("--json", metavar="FILE", help="also save the raw medians as JSON")
    parser.add_argument("--rss-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        rss_child(*args.rss_child)
        return 0

    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    subjects: list[Subject] = []
    skipped: list[str] = []
    for s in all_subjects():
        base = s.label in ("dict", "raw sqlite3", "raw json")
        if wanted and not base and not any(w in s.label for w in wanted):
            continue
        reason = s.available()
        if reason is None:
            subjects.append(s)
        else:
            skipped.append(f"- {s.label}: skipped ({reason})")

    command = "python benchmarks/bench_backends.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    out = ["## persistdict benchmark", "", f"Command: `{command.strip()}`", ""]
    results: dict[int, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="pd-bench-", dir=args.dir) as tmp:
        root = Path(tmp)
        out += ["Machine:", "", *machine_facts(root), ""]
        for n in args.keys:
            runs: dict[str, list[dict[str, float]]] = {s.label: [] for s in subjects}
            for rep in range(args.repeat):
                shift = rep % len(subjects)
                for s in subjects[shift:] + subjects[:shift]:  # interleave: rotate the order
                    last = rep == args.repeat - 1
                    runs[s.label].append(run_once(s, n, main_path(root, n, s), keep=last))
                    print(
                        f"  {n:,} keys, repetition {rep + 1}/{args.repeat}: {s.label} done",
                        file=sys.stderr,
                        flush=True,
                    )
            medians = {
                label: {k: statistics.median(r[k] for r in reps) for k in reps[0]}
                for label, reps in runs.items()
            }
            results[n] = medians
            rss: dict[str, dict[str, int] | str] = {}
            if not args.no_memory:
                for s in subjects:
                    if s.persistent and not (args.memory_only_sqlite and "sqlite" not in s.label):
                        rss[s.label] = measure_rss(s, main_path(root, n, s))
            for s in subjects:
                s.remove(main_path(root, n, s))
            out += render(n, subjects, medians, rss)
    out += durability_table(subjects)
    if skipped:
        out += ["Skipped here:", "", *skipped, ""]
    times = import_times(args.repeat)
    out += [
        "Import time (fresh interpreter, median): "
        + ", ".join(f"`{stmt}` {ms:.1f} ms" for stmt, ms in times.items()),
        "",
    ]
    print("\n".join(out))
    if args.json:
        Path(args.json).write_text(json.dumps({str(n): r for n, r in results.items()}, indent=1))
    if args.plot:
        plot(
            args.plot,
            results,
            [s.label for s in subjects],
            {s.label: s.durable_each for s in subjects},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
