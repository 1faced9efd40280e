"""The ``persistdict`` command line: look at, change, check and convert persistent dicts.

:func:`main` parses, runs one command (:mod:`persistdict.cli.commands`), and turns errors
into one line on stderr and an exit code (``EXIT_CODES``). Values on the command line and on
stdout are JSON. Targets are paths or URLs, detected as :func:`persistdict.open` does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from types import FrameType

import persistdict
from persistdict.cli.commands import (
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_MISSING,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    UsageError,
    error,
)
from persistdict.cli.parser import build_parser
from persistdict.migrate.target import COMMIT, Interrupted
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


class _Signals:
    """Turns SIGINT and SIGTERM into :class:`~persistdict.migrate.target.Interrupted`, once.
    During a step that must not be cut (``COMMIT.active``: making the scratch folder, the
    rename or commit making a copy final) the signal waits until that is done, and after
    the first one the rest are only noted, so the cleanup runs to its end."""

    def __init__(self) -> None:
        self.received: list[int] = []

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if len(self.received) > 1:
            return
        if COMMIT.active:
            COMMIT.pending = signum
            return
        raise Interrupted(signum)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        try:
            old = {s: signal.signal(s, self) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: leave signals alone
            yield
            return
        try:
            yield
        finally:
            for signum, handler in old.items():
                signal.signal(signum, handler)


_EXIT_BY_SIGNAL = {signal.SIGINT: EXIT_INTERRUPTED, signal.SIGTERM: EXIT_TERMINATED}


def _interrupted(args: object, signum: int, *, finished: bool) -> int:
    """Say in one line what an interrupt left behind; return the exit code."""
    name = signal.Signals(signum).name
    written = getattr(args, "dst", None) or getattr(args, "target", None)
    if finished:
        where = f": {mask_password(str(written))!r} holds all of it" if written else ""
        error(f"interrupted ({name}) after the copy was complete{where}")
    elif getattr(args, "command", None) in ("convert", "load") and written:
        error(f"interrupted ({name}); nothing was written to {mask_password(str(written))!r}")
    else:
        error(f"interrupted ({name}); nothing was half-written")
    return _EXIT_BY_SIGNAL.get(signal.Signals(signum), EXIT_INTERRUPTED)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    SIGINT (Ctrl-C) and SIGTERM end a command with one line on stderr and exit code 130 or
    143; what was being written is rolled back or left out first.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    signals = _Signals()
    COMMIT.done, COMMIT.pending = False, None
    try:
        with signals.installed():
            code: int = args.func(args)
            sys.stdout.flush()
        if signals.received:
            # It came while the copy was being made final: that finished first.
            return _interrupted(args, signals.received[0], finished=COMMIT.done)
        return code
    except KeyboardInterrupt as exc:
        if args.debug:
            raise
        signum = getattr(exc, "signum", signal.SIGINT)
        return _interrupted(args, signum, finished=COMMIT.done)
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
