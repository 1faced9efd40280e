"""Load drivers shared by the concurrency tests, reusable for any backend.

Cases are the conformance classes of ``tests/backends`` (``MappingConformance`` subclasses):
their ``open_dict(folder)`` gives the same dict for the same folder, so a backend added there
(redis, postgres, lmdb...) is stressed here with no change to this folder. Each case names the
backend it opens in ``backend_name`` (a registry name), so that a test is parametrized at
collection only over the cases whose backend has what it needs (``cases_where``); the
threads test checks that every case opens the backend it names.

Sizes are small for CI; ``PERSISTDICT_STRESS=N`` multiplies every operation count by N for a
long run by hand, e.g. ``PERSISTDICT_STRESS=50 python -m pytest tests/concurrency``.
"""

from __future__ import annotations

import importlib
import inspect
import multiprocessing
import os
import pkgutil
import random
import signal
import sqlite3
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import persistdict
import tests.backends
from persistdict import PersistDict
from persistdict.backends import backend_class
from persistdict.testing import MappingConformance

THREADS = 8
PROCESSES = 4
KEYS_PER_THREAD = 24
_ABSENT = object()


def stress() -> int:
    """The ``PERSISTDICT_STRESS`` multiplier (1 when unset)."""
    raw = os.environ.get("PERSISTDICT_STRESS", "1")
    try:
        factor = int(raw)
    except ValueError:
        raise ValueError(f"PERSISTDICT_STRESS must be a whole number, not {raw!r}") from None
    return max(factor, 1)


def conformance_cases() -> list[type[MappingConformance]]:
    """Every ``Test*`` conformance class in ``tests/backends``, in a stable order."""
    found: dict[str, type[MappingConformance]] = {}
    for info in pkgutil.iter_modules(tests.backends.__path__):
        if not info.name.startswith("test_"):
            continue
        module = importlib.import_module(f"tests.backends.{info.name}")
        for name, obj in vars(module).items():
            if (
                name.startswith("Test")
                and inspect.isclass(obj)
                and issubclass(obj, MappingConformance)
                and obj.__module__ == module.__name__
            ):
                found[f"{info.name[5:]}:{name}"] = obj
    return [found[k] for k in sorted(found)]


def case_id(case: type[MappingConformance]) -> str:
    return case.__name__.removeprefix("Test").lower()


def case_backend(case: type[MappingConformance]) -> Any:
    """The backend class ``case.open_dict`` opens: the registry's class of its ``backend_name``."""
    return backend_class(case.backend_name)


def shares_writers(b: Any) -> bool:
    """Whether several processes may write a store of backend ``b``, a class (at collection)
    or an instance: ``BackendBase.shares_writers``, the rule ``PersistDict`` asks too."""
    cls = b if isinstance(b, type) else type(b)
    return bool(cls.shares_writers.fget(b))


def one_writer_at_a_time(b: Any) -> bool:
    """Whether a store of backend ``b`` keeps data with one writer at a time (json, csv, pickle
    files; dbm): a second writer waits for the writer lock."""
    return bool(b.persistent and not shares_writers(b))


def cases_where(needs: Callable[[Any], bool]) -> list[type[MappingConformance]]:
    """The conformance cases whose backend class meets ``needs``, to parametrize a test over."""
    return [case for case in conformance_cases() if needs(case_backend(case))]


# Threads.


def hammer_threads(
    d: PersistDict,
    value: Callable[[int], Any],
    *,
    threads: int = THREADS,
    ops: int = 250,
    seed: int = 4,
) -> tuple[dict[str, Any], int]:
    """Run ``threads`` threads of ``ops`` mixed operations each on the one dict ``d``.

    Each thread owns the keys ``t<n>-*``, so the final contents are deterministic: the union
    of the threads' own models, which each thread also checks against what it reads back,
    iterates and pops while the others write. Returns that expected contents and the number
    of operations run; a failed check in any thread is raised here.
    """
    barrier = threading.Barrier(threads)

    def work(t: int) -> tuple[dict[str, Any], int]:
        rng = random.Random(seed * 1000 + t)
        prefix = f"t{t}-"
        keys = [f"{prefix}{i}" for i in range(KEYS_PER_THREAD)]
        model: dict[str, Any] = {}
        barrier.wait()
        for _ in range(ops):
            key = rng.choice(keys)
            new = value(rng.randrange(10_000))
            r = rng.random()
            if r < 0.30:
                d[key] = new
                model[key] = new
            elif r < 0.48:
                assert d.get(key, _ABSENT) == model.get(key, _ABSENT), key
            elif r < 0.58:
                if key in model:
                    del d[key]
                    del model[key]
                else:
                    with pytest.raises(KeyError):
                        del d[key]
            elif r < 0.66:
                assert d.setdefault(key, new) == model.setdefault(key, new), key
            elif r < 0.74:
                assert d.pop(key, None) == model.pop(key, None), key
            elif r < 0.82:
                # Keys present for the whole loop (this thread's own) are seen exactly once.
                mine = [k for k in d if k.startswith(prefix)]
                assert sorted(mine) == sorted(model), "iteration lost or repeated keys"
            elif r < 0.88:
                assert {k: v for k, v in d.items() if k.startswith(prefix)} == model
            elif r < 0.94:
                other = rng.choice(keys)
                with d.transaction():
                    d[key] = new
                    d[other] = new
                model[key] = model[other] = new
            elif r < 0.97:
                assert len(d) >= len(model)
            else:
                d.flush()
        return model, ops

    with ThreadPoolExecutor(threads) as pool:
        results = [f.result() for f in [pool.submit(work, t) for t in range(threads)]]
    expected: dict[str, Any] = {}
    for model, _ in results:
        expected.update(model)
    return expected, sum(n for _, n in results)


# Processes. Workers run in fresh interpreters ("spawn"), as web workers or cron jobs would.


def _open_case(case_ref: tuple[str, str], folder: str) -> PersistDict:
    module, name = case_ref
    case = getattr(importlib.import_module(module), name)()
    d: PersistDict = case.open_dict(Path(folder))
    return d


def _count_worker(case_ref: tuple[str, str], folder: str, n: int, start: Any) -> Any:
    d = _open_case(case_ref, folder)
    start.wait(timeout=30)
    done = 0
    for i in range(n):
        with d.transaction():
            d["n"] = d.get("n", 0) + 1
        done += 1
        d[f"last-{os.getpid()}"] = i  # single writes in between, outside transactions
        if i % 50 == 49:  # open and close under load too
            d.close()
            d = _open_case(case_ref, folder)
    d.close()
    return done


def _queue_worker(case_ref: tuple[str, str], folder: str, start: Any) -> Any:
    with _open_case(case_ref, folder) as d:
        start.wait(timeout=30)
        winner = d.setdefault("winner", os.getpid())
        start.wait(timeout=30)
        d.pop("winner", None)  # one process removes it; the others find it gone
        start.wait(timeout=30)
        popped = []
        while True:
            try:
                key, _ = d.popitem()
            except KeyError:
                return winner, popped
            popped.append(key)


def _create_worker(folder: str, files: int, start: Any) -> Any:
    for i in range(files):
        start.wait(timeout=30)  # all processes open the same new file at the same moment
        with persistdict.open(Path(folder) / f"new-{i}.db") as d, d.transaction():
            d["n"] = d.get("n", 0) + 1
    return files


def _run(target: Any, args: tuple[Any, ...], results: Any) -> None:
    try:
        outcome: Any = target(*args)
        results.put((os.getpid(), outcome, None))
    except BaseException:
        results.put((os.getpid(), None, traceback.format_exc()))


def run_processes(
    target: Callable[..., Any], *args: Any, processes: int = PROCESSES
) -> tuple[list[Any], list[str]]:
    """Run ``target(*args, start)`` in ``processes`` fresh interpreters at once.

    ``start`` is a barrier the workers pass together. Returns each worker's result and the
    traceback of every error a worker met.
    """
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    start = ctx.Barrier(processes)
    workers = [
        ctx.Process(target=_run, args=(target, (*args, start), results)) for _ in range(processes)
    ]
    for w in workers:
        w.start()
    reports = [results.get(timeout=600) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    return [r for _, r, err in reports if err is None], [e for _, _, e in reports if e]


def case_ref(case: type[MappingConformance]) -> tuple[str, str]:
    return case.__module__, case.__name__


def count_in_processes(
    case: type[MappingConformance], folder: Path, n: int
) -> tuple[list[int], list[str]]:
    """4 processes each add 1 to ``d["n"]`` ``n`` times in ``transaction()``."""
    return run_processes(_count_worker, case_ref(case), str(folder), n)


def drain_in_processes(
    case: type[MappingConformance], folder: Path
) -> tuple[list[tuple[int, list[str]]], list[str]]:
    """4 processes race for ``setdefault("winner")``, then ``popitem()`` until empty."""
    return run_processes(_queue_worker, case_ref(case), str(folder))


def create_in_processes(folder: Path, files: int) -> tuple[list[int], list[str]]:
    """4 processes open each of ``files`` new SQLite files at the same moment."""
    return run_processes(_create_worker, str(folder), files)


def visible_from_another_process(case: type[MappingConformance], folder: Path) -> bool:
    """Whether ``open_dict(folder)`` in another process reaches the store opened here."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return bool(pool.apply(_has_marker, (case_ref(case), str(folder))))


def _has_marker(ref: tuple[str, str], folder: str) -> bool:
    with _open_case(ref, folder) as d:
        return "marker" in d


# Single-writer stores (snapshot files, dbm): a writer in another process.


def generation(g: int, keys: int = 40) -> dict[str, str]:
    """Snapshot number ``g``: its size and every value tell ``g``, so a torn read shows."""
    return {"gen": str(g), **{f"k{i:03d}": str(g) for i in range(g % keys + 1)}}


def check_whole(snapshot: dict[str, Any]) -> int:
    """Return the generation of ``snapshot``, asserting it is one whole generation."""
    g = int(snapshot["gen"])
    assert snapshot == generation(g), f"a torn snapshot: {sorted(snapshot.items())[:5]}..."
    return g


def _snapshot_writer(ref: tuple[str, str], folder: str, gens: int, events: Any) -> None:
    first, go, done, finish = events
    with _open_case(ref, folder) as d:
        for g in range(1, gens + 1):
            d.clear()
            d.update(generation(g))
            d.flush()
            if g == 1:
                first.set()
                go.wait(timeout=60)
        done.set()
        finish.wait(timeout=60)  # keep the writer lock until told


class Writer:
    """A process holding ``case``'s store in ``folder`` open for writing.

    It flushes generation 1 and waits; :meth:`proceed` lets it flush generations 2..``gens``
    as fast as it can; :meth:`finish` lets it close. It holds the writer lock throughout.
    """

    def __init__(self, case: type[MappingConformance], folder: Path, gens: int = 2) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.first, self.go, self.done, self.stop = (ctx.Event() for _ in range(4))
        events = (self.first, self.go, self.done, self.stop)
        self.process = ctx.Process(
            target=_snapshot_writer, args=(case_ref(case), str(folder), gens, events)
        )
        self.process.start()
        assert self.first.wait(timeout=60), "the writer process did not start"

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def proceed(self) -> None:
        self.go.set()

    def wait_done(self) -> None:
        assert self.done.wait(timeout=60), "the writer process did not finish writing"

    def finish(self) -> None:
        self.go.set()
        self.stop.set()
        self.process.join(timeout=60)
        assert self.process.exitcode == 0

    def kill(self) -> None:
        self.process.kill()
        self.process.join(timeout=60)


# Fork.


def run_in_fork(
    child: Callable[[], object], parent: Callable[[], object] | None = None, timeout: float = 30
) -> int:
    """Run ``child()`` in a forked child while ``parent()`` runs here; the child's exit code.

    The child ends with ``os._exit``: 0 if ``child()`` returned, 1 if it raised (the
    traceback goes to stderr). A child still running after ``timeout`` seconds is killed and
    counts as a failure (-9): a hang is a bug too.
    """
    with warnings.catch_warnings():
        # Forking while another thread is alive (and may hold a lock) is what these tests check.
        warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            child()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    try:
        if parent is not None:
            parent()
    finally:
        code = _wait_child(pid, timeout)
    return code


@contextmanager
def transaction_in_another_thread(
    d: PersistDict, first: Callable[[], object] = lambda: None
) -> Iterator[None]:
    """Run the body while another thread sits inside ``d.transaction()`` (so holds the
    dict's lock), after doing ``first()`` there; that thread leaves as the body ends."""
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with d.transaction():
            first()
            inside.set()
            leave.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    inside.wait(10)
    try:
        yield
    finally:
        leave.set()
        holder.join()


def _wait_child(pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -9
        time.sleep(0.01)


def integrity(path: Path) -> list[str]:
    """SQLite's ``PRAGMA integrity_check`` of the file at ``path``, through plain sqlite3."""
    cx = sqlite3.connect(path)
    try:
        return [row[0] for row in cx.execute("PRAGMA integrity_check").fetchall()]
    finally:
        cx.close()
