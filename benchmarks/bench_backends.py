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
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import UNITS, fmt, interleaved, machine_facts, measure, one_line
from subjects import Subject, all_subjects

# (column, unit) in table order; measure.UNITS says what one operation is.
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
        "open",
        "reopen + read all",
    )
]
LOOKUPS = 100_000  # random gets / lookups per repetition, at most
EACH_WRITES = 2_000  # per-write-durable writes per repetition, at most


def main_path(root: Path, n: int, subject: Subject) -> Path:
    """Where ``subject`` keeps its ``n``-key store (kept after the last repetition for RSS)."""
    folder = root / str(n) / subject.label.replace(" ", "_")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"main{subject.suffix}"


def run_once(subject: Subject, n: int, path: Path, keep: bool) -> dict[str, float]:
    """One repetition of every workload; returns µs per operation by workload."""
    names = [name for name, _ in WORKLOADS]
    return measure(subject, n, path, names, lookups=LOOKUPS, each=EACH_WRITES, keep=keep)


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
            skipped.append(f"- {s.label}: skipped ({one_line(reason)})")

    command = "python benchmarks/bench_backends.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    out = ["## persistdict benchmark", "", f"Command: `{command.strip()}`", ""]
    results: dict[int, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="pd-bench-", dir=args.dir) as tmp:
        root = Path(tmp)
        out += ["Machine:", "", *machine_facts(root), ""]
        for n in args.keys:
            medians = interleaved(
                subjects,
                args.repeat,
                lambda s, last, n=n: run_once(s, n, main_path(root, n, s), keep=last),
                f"{n:,} keys",
            )
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
