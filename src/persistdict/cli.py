"""The ``persistdict`` command line: look at, change, check and convert persistent dicts.

One small function per command; :func:`main` parses, runs, and turns errors into one line on
stderr and an exit code (see ``EXIT_CODES``). Values on the command line and on stdout are
JSON. Targets are paths or URLs, detected as :func:`persistdict.open` does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import persistdict
from persistdict import migrate
from persistdict.mapping import PersistDict
from persistdict.migrate.sources import connect_read_only, key_value_tables
from persistdict.migrate.target import writing
from persistdict.urls import mask_password, split_scheme

__all__ = ["EXIT_CODES", "main"]

EXIT_OK, EXIT_MISSING, EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_MISSING: "the key is not there (get, del), or the data is damaged (check, a corrupt "
    "file or source)",
    EXIT_USAGE: "bad usage or input: unknown option, invalid JSON, a value the target can't "
    "store, an unknown backend or table name",
    EXIT_FAILED: "could not be done: no such file, destination already holds data, lock held "
    "by another process, read-only, pickle refused, or an I/O error",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); nothing was half-written",
}

_EPILOG_CODES = "exit codes:\n" + "\n".join(f"  {c:<4} {text}" for c, text in EXIT_CODES.items())

_DURABILITY = {
    "dbm": "written in place by the stdlib dbm; flush() syncs where dbm can; a crash "
    "mid-write can damage the file",
    "memory": "nothing is kept after the process ends",
}


class _UsageError(Exception):
    """Bad input the user typed (not a storage problem)."""


# Opening targets.


def _open(args: argparse.Namespace, target: str, flag: str) -> PersistDict:
    options: dict[str, Any] = {"backend": args.backend, "format": args.format}
    if args.table is not None:
        options["table"] = args.table
    if args.serializer is not None:
        options["serializer"] = args.serializer
    if args.timeout is not None:
        options["timeout"] = args.timeout
    return persistdict.open(target, flag, **options)


def _label(d: PersistDict) -> str:
    return d.backend.describe().replace(" read-only", "")


def _dumps(key: str, value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise _UsageError(f"the value of key {key!r} can't be shown as JSON: {exc}") from exc


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
    _error(f"key {key!r} not found in {_label(d)}")
    return EXIT_MISSING


def cmd_set(args: argparse.Namespace) -> int:
    if args.text:
        value: Any = args.value
    else:
        try:
            value = json.loads(args.value)
        except json.JSONDecodeError as exc:
            raise _UsageError(
                f"VALUE {args.value!r} is not JSON ({exc.msg}); to store it as a string, "
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
    with _open(args, args.target, "r") as d:
        out = sys.stdout
        # Streamed one item per line, so memory stays flat however large the dict is.
        first = True
        for key, value in d.items():
            out.write(("{\n  " if first else ",\n  ") + json.dumps(key, ensure_ascii=False))
            out.write(": " + _dumps(key, value))
            first = False
        out.write("{}\n" if first else "\n}\n")
    return EXIT_OK


def cmd_load(args: argparse.Namespace) -> int:
    raw = sys.stdin.buffer.read()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _UsageError(f"stdin is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _UsageError(f"stdin holds a JSON {type(data).__name__}; load needs an object")
    existing = "replace" if args.replace else "merge"
    options: dict[str, Any] = {}
    if args.serializer is not None:
        options["serializer"] = args.serializer
    if args.timeout is not None:
        options["timeout"] = args.timeout
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
        rate = done / seconds if seconds > 0 else 0.0
        stream.write(f"\r{done:,}{of} keys, {rate:,.0f} keys/s\x1b[K")
        stream.flush()

    return show


def cmd_convert(args: argparse.Namespace) -> int:
    existing = "replace" if args.replace else "merge" if args.merge else "refuse"
    on_terminal = sys.stderr.isatty() and not args.quiet
    options: dict[str, Any] = {}
    if args.timeout is not None:
        options["timeout"] = args.timeout
    try:
        summary = migrate.copy(
            args.src,
            args.dst,
            source=args.source,
            trust_pickle=args.trust_pickle,
            on_error=args.on_error,
            src_table=args.src_table or args.table,
            src_format=args.src_format,
            dst_table=args.dst_table or args.table or "items",
            dst_backend=args.backend,
            dst_format=args.format,
            existing=existing,
            progress=_progress(sys.stderr) if on_terminal else None,
            **options,
        )
    finally:
        if on_terminal:
            sys.stderr.write("\r\x1b[K")
    if not args.quiet:
        print(summary.line(), file=sys.stderr)
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    try:
        d = _open(args, args.target, "r")
    except persistdict.CorruptError as exc:
        print(f"broken: {_one_line(str(exc))}")
        return EXIT_MISSING
    with d:
        label = _label(d)
        problems = _problems(d)
        if problems:
            for problem in problems:
                print(f"broken: {label}: {problem}")
            return EXIT_MISSING
        print(f"ok: {label}: {len(d)} keys, every value readable")
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
                problems.append(f"the value of key {key!r} can't be decoded ({exc})")
                if len(problems) >= limit:
                    problems.append(f"stopped after {limit} bad values")
                    break
    except persistdict.CorruptError as exc:
        problems.append(str(exc))
    return problems


def _size(path: str) -> int:
    folder, name = os.path.split(os.path.abspath(path))
    total = 0
    for entry in os.listdir(folder or "."):
        if entry == name or entry.startswith((name + ".", name + "-wal")):
            with contextlib.suppress(OSError):
                full = os.path.join(folder, entry)
                if os.path.isfile(full):
                    total += os.path.getsize(full)
    return total


def _durability(backend: Any) -> str:
    if getattr(backend, "stores_objects", False):
        return "the whole file is replaced atomically and fsynced on every flush and close"
    if hasattr(backend, "synchronous"):
        return (
            "WAL; each write is committed before the call returns unless a writer opens it "
            "with commit_every=N; synchronous=NORMAL by default (survives a killed process), "
            "synchronous='FULL' survives power loss"
        )
    text = getattr(backend, "durability", None) or _DURABILITY.get(backend.name)
    return str(text) if text else "see the backends table in the README"


def cmd_info(args: argparse.Namespace) -> int:
    with _open(args, args.target, "r") as d:
        backend = d.backend
        facts: dict[str, Any] = {"target": mask_password(args.target), "backend": backend.name}
        table = getattr(backend, "table", None)
        if table is not None:
            facts["table"] = table
        path = getattr(backend, "path", None)
        if backend.name == "sqlite" and path is not None:
            cx = connect_read_only(path)
            try:
                facts["tables"] = sorted(key_value_tables(cx))
            finally:
                cx.close()
        facts["keys"] = len(d)
        if path is not None:
            facts["size"] = _size(path)
        elif split_scheme(args.target)[0] not in (None, "memory"):
            facts["size"] = None
        facts["durability"] = _durability(backend)
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


# The parser.


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=30)


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("target options")
    group.add_argument(
        "--table",
        metavar="NAME",
        help="the table (sqlite, postgres) or hash (redis); default: items",
    )
    group.add_argument(
        "--backend",
        default="auto",
        metavar="NAME",
        help="backend name instead of detection by URL scheme, extension and content: "
        + ", ".join(persistdict.available_backends()),
    )
    group.add_argument(
        "--format",
        choices=("json", "csv", "pickle"),
        help="snapshot format of a file whose extension says nothing (AppState.txt)",
    )
    group.add_argument(
        "--serializer",
        choices=("json", "pickle"),
        help="how a per-key backend (sqlite, dbm...) encodes values; default json",
    )
    group.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="wait this long for another process's lock"
    )
    group.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an error",
    )
    return common


_COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str, str]] = {
    "get": (
        cmd_get,
        "print the value of KEY as JSON",
        "examples:\n  persistdict get state.json global\n"
        "  persistdict get data.db user:42 --table users --raw",
    ),
    "set": (
        cmd_set,
        "store VALUE (JSON) under KEY; the target is created if missing",
        'examples:\n  persistdict set state.json global \'{"root_dir": "/srv"}\'\n'
        "  persistdict set data.db greeting hello --text",
    ),
    "del": (
        cmd_del,
        "delete KEY",
        "example:\n  persistdict del state.json global",
    ),
    "keys": (
        cmd_keys,
        "print every key, one per line",
        "examples:\n  persistdict keys data.db\n  persistdict keys data.db -0 | xargs -0 ...",
    ),
    "dump": (
        cmd_dump,
        "print the whole dict as one JSON object",
        "example:\n  persistdict dump data.db > backup.json",
    ),
    "load": (
        cmd_load,
        "add the items of a JSON object read from stdin, in one transaction",
        "examples:\n  persistdict load data.db < backup.json\n"
        "  echo '{\"a\": 1}' | persistdict load state.json --replace",
    ),
    "convert": (
        cmd_convert,
        "copy everything from SRC into DST, all or nothing",
        "examples:\n  persistdict convert state.json state.db\n"
        "  persistdict convert old.sqlite new.db --from sqlitedict --trust-pickle\n"
        "  persistdict convert AppState.txt state.json --from permadict\n"
        "  persistdict convert cache_dir cache.db --from diskcache --trust-pickle "
        "--on-error str\n\n"
        "SRC is opened read-only. A DST that does not exist is built beside its final place "
        "and\nmoved there when complete; an existing one is written in one transaction. A "
        "failed or\ninterrupted convert leaves no half-written DST.\n\n"
        "--from detection (when --from is not given), only where it is certain:\n"
        "  diskcache      a folder (or its cache.db) with diskcache's Cache and Settings "
        "tables\n"
        "  sqlitedict     a SQLite table with exactly the schema sqlitedict creates\n"
        "  shelve         a dbm database whose values are pickles\n"
        "  otherwise SRC is read as persistdict.open() would read it. PermaDict files and\n"
        "  the original module's (persistdict-0) files look like ordinary JSON/CSV/pickle or\n"
        "  SQLite files: name them with --from permadict or --from persistdict-0.",
    ),
    "check": (
        cmd_check,
        "check integrity: parse the file or run SQLite's integrity_check, then read every "
        "value; exit 1 when broken",
        "example:\n  persistdict check state.json && echo fine",
    ),
    "info": (
        cmd_info,
        "show the backend, table, number of keys, size on disk and durability",
        "example:\n  persistdict info data.db --table users",
    ),
}


def _add_command_arguments(name: str, p: argparse.ArgumentParser) -> None:
    if name == "convert":
        p.add_argument("src", metavar="SRC", help="source path or URL")
        p.add_argument("dst", metavar="DST", help="destination path or URL")
        p.add_argument(
            "--from",
            dest="source",
            default="auto",
            metavar="KIND",
            help=f"what SRC is: {', '.join(migrate.KINDS)}, or a backend name (default: "
            "detect, see below)",
        )
        p.add_argument(
            "--trust-pickle",
            action="store_true",
            help="allow unpickling SRC (shelve, sqlitedict, diskcache, pickle files); "
            "unpickling runs code chosen by whoever wrote it",
        )
        p.add_argument(
            "--on-error",
            choices=migrate.ON_ERROR,
            default="raise",
            help="a key or value DST can't hold: stop (raise, default), leave it out "
            "(skip), or store its text (str); the summary lists them",
        )
        p.add_argument("--src-table", metavar="NAME", help="the table of SRC (default: --table)")
        p.add_argument("--dst-table", metavar="NAME", help="the table of DST (default: --table)")
        p.add_argument(
            "--src-format", choices=("json", "csv", "pickle"), help="snapshot format of SRC"
        )
        mode = p.add_mutually_exclusive_group()
        mode.add_argument("--replace", action="store_true", help="replace what DST holds")
        mode.add_argument("--merge", action="store_true", help="add to what DST holds")
        p.add_argument("-q", "--quiet", action="store_true", help="print no summary line")
        return
    p.add_argument("target", metavar="TARGET", help="a path or URL")
    if name in ("get", "set", "del"):
        p.add_argument("key", metavar="KEY")
    if name == "set":
        p.add_argument("value", metavar="VALUE", help="JSON, e.g. 42, '\"text\"', '[1, 2]'")
        p.add_argument("--text", action="store_true", help="store VALUE as a string, not JSON")
    elif name == "get":
        p.add_argument("--raw", action="store_true", help="print a string value unquoted")
    elif name == "keys":
        p.add_argument("-0", "--null", action="store_true", help="end keys with NUL, not newline")
    elif name == "load":
        p.add_argument("--replace", action="store_true", help="remove the keys not in stdin")
    elif name == "info":
        p.add_argument("--json", action="store_true", help="print the facts as one JSON object")


def build_parser() -> argparse.ArgumentParser:
    """The ``persistdict`` argument parser, one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="persistdict",
        description="Look at, change, check and convert persistent dicts. Values are JSON; "
        "TARGET is a path or URL (state.json, data.db, sqlite:///data.db, redis://host/0).",
        epilog=_EPILOG_CODES,
        formatter_class=_formatter,
    )
    parser.add_argument("--version", action="version", version=persistdict.__version__)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _common()
    for name, (func, summary, examples) in _COMMANDS.items():
        p = commands.add_parser(
            name,
            parents=[common],
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            epilog=examples + "\n\n" + _EPILOG_CODES,
            formatter_class=_formatter,
        )
        _add_command_arguments(name, p)
        p.set_defaults(func=func)
    return parser


# Errors.


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _error(message: str) -> None:
    print(f"persistdict: error: {_one_line(message)}", file=sys.stderr)


def _describe(exc: BaseException) -> tuple[str, int]:
    """The one-line message and exit code for an error."""
    if isinstance(exc, _UsageError):
        return str(exc), EXIT_USAGE
    if isinstance(exc, persistdict.CorruptError):
        return str(exc), EXIT_MISSING
    if isinstance(exc, FileNotFoundError):
        name = exc.filename if exc.filename is not None else str(exc)
        return f"no such file: {mask_password(str(name))!r}", EXIT_FAILED
    if isinstance(exc, OSError) and not isinstance(exc, persistdict.Error):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}", EXIT_FAILED
    if isinstance(exc, (ValueError, TypeError)):
        return str(exc), EXIT_USAGE
    if isinstance(exc, (persistdict.Error, ImportError)):
        return str(exc), EXIT_FAILED
    return f"{type(exc).__name__}: {exc} (run with --debug for the traceback)", EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        if args.debug:
            raise
        _error("interrupted; nothing was half-written")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`persistdict keys big.db | head`): that is not an error.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        if args.debug:
            raise
        message, code = _describe(exc)
        _error(message)
        return code
