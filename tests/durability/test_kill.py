"""Kill test: SIGKILL a writer at random moments; the file must always hold a whole generation.

A forked child opens the dict and writes generation after generation (every key of generation
``g`` holds ``value(g, i)``), printing ``g`` on a pipe after each ``flush()`` returns. The
parent kills it after a random delay, reopens the file and checks that it opens, that all its
keys belong to one generation, and that this generation is the last acknowledged one or the
one being written when the kill came. The next trial continues on the same file, so every
trial also tests reopening after the previous kill (stale temp files, SQLite's WAL recovery).

Forking, rather than starting a fresh interpreter, keeps a trial to a few milliseconds, so CI
runs ``PERSISTDICT_KILL_TRIALS`` (default 60) trials per backend; by hand::

    PERSISTDICT_KILL_TRIALS=10000 python -m pytest tests/durability/test_kill.py -rA
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict.fileio import TEMP_MARKER
from tests.durability.evidence import knob, record

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork"), reason="the kill test forks its writer (POSIX only)"
)

KEYS = 12
TARGETS: dict[str, tuple[str, dict[str, Any]]] = {
    "json": ("state.json", {}),
    "csv": ("state.csv", {}),
    "pickle": ("state.bin", {"backend": "pickle"}),
    "sqlite": ("state.db", {}),
}


def value(generation: int, i: int) -> str:
    # Sizes vary from one generation to the next, so a torn or mixed file can't look whole.
    return f"{generation}:{i}:" + "x" * ((generation * 7 + i) % 40)


def generation_items(generation: int) -> dict[str, str]:
    items = {f"k{i:02d}": value(generation, i) for i in range(KEYS)}
    items["gen"] = str(generation)
    return items


def _writer(path: Path, options: dict[str, Any], ack_fd: int) -> None:
    d = persistdict.open(path, **options)
    generation = int(d.get("gen", "0"))
    while True:
        generation += 1
        d.update(generation_items(generation))  # one transaction on sqlite
        d.flush()
        os.write(ack_fd, f"{generation}\n".encode())


def _fork_writer(path: Path, options: dict[str, Any]) -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 0
        try:
            os.close(read_fd)
            _writer(path, options, write_fd)
        except BaseException:
            os.write(write_fd, ("E " + traceback.format_exc()).encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    return pid, read_fd


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode()


@dataclass
class KillStats:
    trials: int = 0
    acknowledged: int = 0
    corrupt: int = 0
    lost_acknowledged: int = 0
    leftover_temps: int = 0
    temps_after_reopen: int = 0
    failures: list[str] = field(default_factory=list)


def _temps(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if TEMP_MARKER in p.name and p.name.endswith(".tmp"))


def _check_trial(path: Path, options: dict[str, Any], last_ack: int, stats: KillStats) -> int:
    """Reopen after a kill; return the generation found (``last_ack`` if it can't be read)."""
    stats.leftover_temps += _temps(path.parent)
    try:
        with persistdict.open(path, **options) as d:
            stats.temps_after_reopen += _temps(path.parent)
            data = dict(d)
    except persistdict.CorruptError as exc:
        stats.corrupt += 1
        stats.failures.append(f"trial {stats.trials}: {exc}")
        return last_ack
    generation = int(data.get("gen", "0"))
    expected = generation_items(generation) if generation else {}
    if data != expected:
        stats.corrupt += 1
        stats.failures.append(
            f"trial {stats.trials}: mixed or torn data for generation {generation}"
        )
    if generation < last_ack:
        stats.lost_acknowledged += 1
        stats.failures.append(
            f"trial {stats.trials}: holds {generation}, {last_ack} was acknowledged"
        )
    elif generation > last_ack + 1:
        stats.failures.append(f"trial {stats.trials}: generation {generation} was never written")
    return generation


def run_kill_trials(folder: Path, backend: str, trials: int, seed: int) -> KillStats:
    name, options = TARGETS[backend]
    path = folder / name
    rng = random.Random(seed)
    stats = KillStats()
    found = 0  # the generation on disk when a trial starts: its writer continues from it
    # Most kills land within the first few flushes; a few run longer so the file grows.
    for _ in range(trials):
        stats.trials += 1
        pid, ack_fd = _fork_writer(path, options)
        time.sleep(rng.choice((rng.uniform(0, 0.004), rng.uniform(0, 0.05))))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        output = _read_all(ack_fd)
        if not os.WIFSIGNALED(status):
            pytest.fail(f"the {backend} writer stopped by itself:\n{output}")
        acks = [int(line) for line in output.split()]
        stats.acknowledged += len(acks)
        found = _check_trial(path, options, acks[-1] if acks else found, stats)
    return stats


@pytest.mark.parametrize("backend", sorted(TARGETS))
def test_sigkill_leaves_a_whole_acknowledged_generation(tmp_path: Path, backend: str) -> None:
    trials = knob("PERSISTDICT_KILL_TRIALS", 60)
    seed = knob("PERSISTDICT_KILL_SEED", 1)
    started = time.monotonic()
    stats = run_kill_trials(tmp_path, backend, trials, seed)
    line = (
        f"kill {backend}: trials={stats.trials} flushes-acknowledged={stats.acknowledged} "
        f"corrupt={stats.corrupt} lost-acknowledged={stats.lost_acknowledged} "
        f"leftover-temps={stats.leftover_temps} (left after reopen: {stats.temps_after_reopen}) "
        f"in {time.monotonic() - started:.1f}s"
    )
    record(line)
    print(line, file=sys.stderr)
    assert stats.failures == []
    assert stats.temps_after_reopen == 0
    assert stats.acknowledged > 0, "no flush ever completed before a kill: the test saw nothing"
