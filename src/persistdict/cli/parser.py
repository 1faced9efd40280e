"""The argument parser: every command with its options, help text and examples."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import persistdict
from persistdict import migrate
from persistdict.backends import SNAPSHOT_FORMATS
from persistdict.cli.commands import (
    EXIT_CODES,
    cmd_check,
    cmd_convert,
    cmd_del,
    cmd_dump,
    cmd_get,
    cmd_info,
    cmd_keys,
    cmd_load,
    cmd_set,
)

__all__ = ["build_parser"]

_EPILOG_CODES = "exit codes:\n" + "\n".join(f"  {c:<4} {text}" for c, text in EXIT_CODES.items())


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
        choices=SNAPSHOT_FORMATS,
        help="snapshot format of a file whose extension says nothing (AppState.txt)",
    )
    group.add_argument(
        "--serializer",
        choices=("json", "pickle"),
        help="how a per-key backend (sqlite, dbm...) encodes values; default json",
    )
    group.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow unpickling, which runs code chosen by whoever wrote the data: needed "
        "for pickle in --backend, --format, --serializer, and for a pickled convert SRC "
        "(shelve, sqlitedict, diskcache, pickle files)",
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
        "--backend, --format and --serializer describe DST.\n"
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
            "--on-error",
            choices=migrate.ON_ERROR,
            default="raise",
            help="a key or value DST can't hold: stop (raise, default), leave it out "
            "(skip), or store its text (str); the summary lists them",
        )
        p.add_argument("--src-table", metavar="NAME", help="the table of SRC (default: --table)")
        p.add_argument("--dst-table", metavar="NAME", help="the table of DST (default: --table)")
        p.add_argument("--src-format", choices=SNAPSHOT_FORMATS, help="snapshot format of SRC")
        mode = p.add_mutually_exclusive_group()
        mode.add_argument("--replace", action="store_true", help="replace what DST holds")
        mode.add_argument("--merge", action="store_true", help="add to what DST holds")
        p.add_argument("-q", "--quiet", action="store_true", help="print no summary line")
        p.add_argument(
            "--recover",
            action="store_true",
            help="a damaged json/csv/pickle SRC: copy its previous generation instead (what "
            "was saved after it is not copied; SRC is not changed)",
        )
        return
    p.add_argument("target", metavar="TARGET", help="a path or URL")
    p.add_argument(
        "--recover",
        action="store_true",
        help="a damaged json/csv/pickle file: use its previous generation instead (a command "
        "that writes puts it back in place and keeps the damaged file aside; what was saved "
        "after it is lost)",
    )
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
        epilog='examples:\n  persistdict set state.json cfg \'{"root": "/srv"}\'\n'
        "  persistdict get state.json cfg\n"
        "  persistdict convert old.sqlite new.db --from sqlitedict --trust-pickle\n"
        "  persistdict COMMAND --help      (each command's options and examples)\n\n"
        + _EPILOG_CODES,
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
