"""The ``persistdict`` command line: look at, change, check and convert persistent dicts.

``main`` parses, runs one command (``persistdict.cli.commands``), and turns errors
into one line on stderr and an exit code (``EXIT_CODES``). Values on the command line and on
stdout are JSON. Targets are paths or URLs, detected as [`persistdict.open`][persistdict.open] does.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence

import persistdict
from persistdict.cli.commands import (
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_MISSING,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    error,
)
from persistdict.cli.parser import build_parser
from persistdict.urls import mask_password

__all__ = ["EXIT_CODES", "build_parser", "main"]


def _describe(exc: BaseException) -> tuple[str, int]:
    """The one-line message and exit code for an error."""
    if isinstance(exc, UsageError):
        return str(exc), EXIT_USAGE
    if isinstance(exc, persistdict.CorruptError):
        return str(exc), EXIT_MISSING
    if isinstance(exc, FileNotFoundError):
        if exc.strerror and exc.strerror.startswith("no such"):
            # Ours names the path; its hint speaks of open()'s flag, which means nothing here.
            found = exc.strerror.split(";")[0]
            return f"{found}; check the path (set, load and convert create it)", EXIT_FAILED
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
        error("interrupted; nothing was half-written")
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
        error(message)
        return code
