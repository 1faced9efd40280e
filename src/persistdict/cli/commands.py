"""The commands of the command line: one small function each, taking the parsed arguments
and returning the exit code. Errors propagate to ``persistdict.cli.main``."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any, TextIO

import persistdict
from persistdict import migrate
from persistdict.backends import available, declared_class
from persistdict.backends.base import MissingTableError
from persistdict.detect import detect_backend
from persistdict.fileio import previous_path
from persistdict.mapping import PersistDict
from persistdict.migrate.target import local_path, remove_dead_scratches, writing
from persistdict.serializers import why_not_json
from persistdict.urls import mask_password, split_scheme

__all__ = [
    "EXIT_CODES",
    "UsageError",
    "check_pickle_opt_in",
    "cmd_check",
    "cmd_convert",
    "cmd_del",
    "cmd_dump",
    "cmd_get",
    "cmd_info",
    "cmd_keys",
    "cmd_load",
    "cmd_set",
    "error",
    "explain",
    "one_line",
]

EXIT_OK, EXIT_MISSING, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_MISSING: "the key is not there (get, del), or the data is damaged (check, a corrupt "
    "file or source)",
    EXIT_USAGE: "bad usage or input: unknown option, invalid JSON, a value the target can't "
    "store, an unknown backend or table name",
    EXIT_FAILED: "could not be done: no such file, destination already holds data, lock held "
    "by another process, read-only, pickle refused, or an I/O error",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C, SIGINT); nothing was half-written",
    EXIT_TERMINATED: "terminated (SIGTERM); nothing was half-written",
}


class UsageError(Exception):
    """Bad input the user typed (not a storage problem)."""


# Opening targets.


def check_pickle_opt_in(args: argparse.Namespace) -> None:
    """Refuse pickle named by any option unless ``--trust-pickle`` is given too.

    On the command line ``--trust-pickle`` is the one opt-in: ``--format pickle`` alone is
    easy to type at a file someone else sent, and reading it would run their code.
    """
    if args.trust_pickle:
        return
    for option in ("backend", "format", "serializer", "src_format", "source"):
        if getattr(args, option, None) == "pickle":
            name = "--from" if option == "source" else "--" + option.replace("_", "-")
            raise persistdict.errors.UntrustedPickleError(
                f"{name} pickle reads pickles, and unpickling runs code chosen by whoever "
                "wrote the file, so it is refused by default. If you trust the data, add "
                "--trust-pickle"
            )


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The opening options given on the command line, left out when not given."""
    options: dict[str, Any] = {}
    if args.serializer is not None:
        options["serializer"] = args.serializer
    if args.timeout is not None:
        options["timeout"] = args.timeout
    return options


def _open(args: argparse.Namespace, target: str, flag: str) -> PersistDict:
    options = _options(args)
    if args.table is not None:
        options["table"] = args.table
    _add_recover(args, target, options)
    try:
        return persistdict.open(target, flag, backend=args.backend, format=args.format, **options)
    except MissingTableError as exc:
        # A mistyped --table is bad input, and must not read as an empty dict.
        raise UsageError(
            f"{mask_password(exc.where)} has no table {exc.table!r}; {exc.listing()}. Pass "
            "--table with one of them" + ("" if flag == "r" else " (set and load create it)")
        ) from None


def _add_recover(args: argparse.Namespace, target: str, options: dict[str, Any]) -> None:
    if not getattr(args, "recover", False):
        return
    chosen = detect_backend(target, args.format) if args.backend == "auto" else args.backend
    if not declared_class(chosen).stores_objects:
        raise UsageError(
            f"--recover puts back the previous generation of a json, csv or pickle file; "
            f"{mask_password(target)!r} is a {chosen} store, which keeps none"
        )
    options["recover"] = True


def _strict_json(text: str | bytes) -> Any:
    """``json.loads`` refusing NaN and Infinity, which other JSON readers reject."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON; store null or a string instead")

    return json.loads(text, parse_constant=refuse)


def _label(d: PersistDict) -> str:
    return d.backend.describe().replace(" read-only", "")


def _dumps(key: str, value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UsageError(
            f"the value of key {key!r} can't be shown as JSON: {why_not_json(exc)}"
        ) from exc


# The commands.


def cmd_get(args: argparse.Namespace) -> int:
    with _open(args, args.target, "r") as d:
        try:
            value = d[args.key]
        except KeyError:
            return _not_found(args.key, d)
        text = value if args.raw and isinstance(value, str) else _dumps(args.key, value)
    print(text)
    return EXIT_OK


def _not_found(key: str, d: PersistDict) -> int:
    error(f"key {key!r} not found in {_label(d)}")
    return EXIT_MISSING


def cmd_set(args: argparse.Namespace) -> int:
    if args.text:
        value: Any = args.value
    else:
        try:
            value = _strict_json(args.value)
        except ValueError as exc:
            why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise UsageError(
                f"VALUE {args.value!r} is not JSON ({why}); to store it as a string, "
                f"quote it ('\"{args.value}\"') or pass --text"
            ) from None
    with _open(args, args.target, "c") as d:
        d[args.key] = value
    return EXIT_OK


def cmd_del(args: argparse.Namespace) -> int:
    with _open(args, args.target, "w") as d:
        try:
            del d[args.key]
        except KeyError:
            return _not_found(args.key, d)
    return EXIT_OK


def cmd_keys(args: argparse.Namespace) -> int:
    end = "\0" if args.null else "\n"
    with _open(args, args.target, "r") as d:
        out = sys.stdout
        for key in d:
            out.write(key + end)
    return EXIT_OK


def cmd_dump(args: argparse.Namespace) -> int:
    # Streamed one item per line into a spool (memory up to 8 MiB, then a temp file), and
    # copied to stdout only once whole: a dump that fails midway prints nothing, so
    # `persistdict dump data.db > backup.json` never leaves a backup that looks complete.
    with tempfile.SpooledTemporaryFile(8 << 20, "w+", encoding="utf-8", newline="") as out:
        with _open(args, args.target, "r") as d:
            first = True
            for key, value in d.items():
                out.write(("{\n  " if first else ",\n  ") + json.dumps(key, ensure_ascii=False))
                out.write(": " + _dumps(key, value))
                first = False
            out.write("{}\n" if first else "\n}\n")
        out.seek(0)
        shutil.copyfileobj(out, sys.stdout)
    return EXIT_OK


def cmd_load(args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        raise UsageError(
            "load reads a JSON object from stdin; redirect a file or pipe one in, e.g. "
            f"persistdict load {args.target} < backup.json"
        )
    raw = sys.stdin.buffer.read()
    try:
        data = _strict_json(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UsageError(f"stdin is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"stdin holds a JSON {type(data).__name__}; load needs an object")
    existing = "replace" if args.replace else "merge"
    options = _options(args)
    _add_recover(args, args.target, options)
    with writing(
        args.target,
        backend=args.backend,
        fmt=args.format,
        table=args.table or "items",
        existing=existing,
        **options,
    ) as (d, _):
        d.update(data)
    return EXIT_OK


def _progress(stream: TextIO) -> migrate.Progress:
    last = [0.0]

    def show(done: int, total: int | None, seconds: float) -> None:
        now = time.monotonic()
        if now - last[0] < 0.1 and done != total:
            return
        last[0] = now
        of = f" of {total:,}" if total is not None else ""
        # A rate over less than a second measures the setup more than the copy.
        rate = f", {done / seconds:,.0f} keys/s" if seconds >= 1 else ""
        stream.write(f"\r{done:,}{of} keys{rate}\x1b[K")
        stream.flush()

    return show


def _recovered_source(args: argparse.Namespace) -> tuple[str, str | None]:
    """SRC and its format for ``convert --recover``: the previous generation kept beside a
    damaged snapshot file, read where it lies (nothing is moved), or SRC itself if whole."""
    chosen = args.source if args.source != "auto" else detect_backend(args.src, args.src_format)
    if chosen not in available() or not declared_class(chosen).stores_objects:
        raise UsageError(
            "--recover copies the previous generation of a damaged json, csv or pickle file; "
            f"{mask_password(args.src)!r} is read as {chosen}, which keeps none"
        )
    try:
        persistdict.open(args.src, "r", backend=chosen).close()
    except persistdict.CorruptError:
        pass
    else:
        return args.src, args.src_format  # whole: nothing to recover
    with persistdict.open(args.src, "r", backend=chosen, recover=True) as d:
        count = len(d)  # warns what is lost; raises if there is no previous generation
    held = "1 key" if count == 1 else f"{count} keys"
    print(f"persistdict: note: copying the previous generation ({held})", file=sys.stderr)
    return str(previous_path(args.src)), chosen


def cmd_convert(args: argparse.Namespace) -> int:
    existing = "replace" if args.replace else "merge" if args.merge else "refuse"
    on_terminal = sys.stderr.isatty() and not args.quiet
    src, src_format = _recovered_source(args) if args.recover else (args.src, args.src_format)
    try:
        summary = migrate.copy(
            src,
            args.dst,
            source="auto" if src != args.src else args.source,
            trust_pickle=args.trust_pickle,
            on_error=args.on_error,
            src_table=args.src_table or args.table,
            src_format=src_format,
            dst_table=args.dst_table or args.table or "items",
            dst_backend=args.backend,
            dst_format=args.format,
            existing=existing,
            progress=_progress(sys.stderr) if on_terminal else None,
            **_options(args),
        )
    finally:
        if on_terminal:
            sys.stderr.write("\r\x1b[K")
    if not args.quiet:
        print(summary.line(), file=sys.stderr)
        for note in summary.notes:
            print(f"persistdict: note: {note}", file=sys.stderr)
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    path = local_path(args.target, args.backend, args.format)
    if path is not None:
        for scratch in remove_dead_scratches(path):
            print(
                f"persistdict: note: removed {scratch!r}, left by a convert that was killed",
                file=sys.stderr,
            )
    try:
        d = _open(args, args.target, "r")
    except persistdict.CorruptError as exc:
        print(f"broken: {one_line(explain(exc))}")
        return EXIT_MISSING
    with d:
        label = _label(d)
        problems = _problems(d)
        if problems:
            for problem in problems:
                print(f"broken: {label}: {problem}")
            return EXIT_MISSING
        count = len(d)
        print(f"ok: {label}: {count} key{'' if count == 1 else 's'}, every value readable")
    return EXIT_OK


def _problems(d: PersistDict, limit: int = 20) -> list[str]:
    """What is wrong with an open dict: the storage's own check (a parse of the file,
    SQLite's integrity_check...), then whether every value decodes."""
    problems = d.backend.check()
    if problems:
        return problems
    try:
        for key in d:
            try:
                d[key]
            except KeyError:
                continue  # deleted meanwhile by another process
            except (ValueError, TypeError) as exc:
                problems.append(f"the value of key {key!r} can't be decoded ({explain(exc)})")
                if len(problems) >= limit:
                    problems.append(f"stopped after {limit} bad values")
                    break
    except persistdict.CorruptError as exc:
        problems.append(explain(exc))
    return problems


def _size(path: str) -> int:
    if os.path.isdir(path):  # an LMDB environment
        return sum(
            os.path.getsize(os.path.join(path, entry))
            for entry in os.listdir(path)
            if os.path.isfile(os.path.join(path, entry))
        )
    folder, name = os.path.split(os.path.abspath(path))
    total = 0
    for entry in os.listdir(folder or "."):
        if entry == name or entry.startswith((name + ".", name + "-wal")):
            with contextlib.suppress(OSError):
                full = os.path.join(folder, entry)
                if os.path.isfile(full):
                    total += os.path.getsize(full)
    return total


def cmd_info(args: argparse.Namespace) -> int:
    with _open(args, args.target, "r") as d:
        backend = d.backend
        facts: dict[str, Any] = {"target": mask_password(args.target), "backend": backend.name}
        table, path = backend.table, backend.path
        if table is not None:
            facts["table"] = table
        tables = backend.tables()
        if tables is not None:
            facts["tables"] = tables
            if table not in tables:
                # A read-only open of a missing table is an empty dict; here it is a typo.
                found = ", ".join(tables) or "none"
                raise UsageError(f"{path!r} has no table {table!r}; its tables: {found}")
        facts["keys"] = len(d)
        if path is not None:
            facts["size"] = _size(path)
        elif backend.persistent and split_scheme(args.target)[0] is not None:
            facts["size"] = None
        facts["durability"] = backend.durability
    if args.json:
        print(json.dumps(facts, ensure_ascii=False))
        return EXIT_OK
    for name, value in facts.items():
        if name == "size":
            value = "unknown (not a local file)" if value is None else f"{value:,} bytes"
        elif isinstance(value, list):
            value = ", ".join(value)
        print(f"{name}: {value}")
    return EXIT_OK


def explain(exc: BaseException) -> str:
    """An error's message as the command line shows it: with the remedies a shell user
    has (``--recover``, ``--timeout``), not Python arguments."""
    return getattr(exc, "cli_message", None) or str(exc)


def one_line(text: str) -> str:
    return " ".join(text.split())


def error(message: str) -> None:
    print(f"persistdict: error: {one_line(message)}", file=sys.stderr)
