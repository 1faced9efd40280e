"""The ``persistdict`` command line: look at, change, check and convert persistent dicts.

``main`` parses, runs one command (``persistdict.cli.commands``), and turns errors
into one line on stderr and an exit code (``EXIT_CODES``). Values on the command line and on
stdout are JSON. Targets are paths or URLs, detected as [`persistdict.open`][persistdict.open] does.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import warnings
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any, TextIO

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
    check_pickle_opt_in,
    error,
    explain,
    one_line,
)
from persistdict.cli.parser import build_parser
from persistdict.migrate.target import COMMIT, Interrupted
from persistdict.urls import mask_password, redact, redact_exception

__all__ = ["EXIT_CODES", "build_parser", "main"]


def _describe(exc: BaseException) -> tuple[str, int]:
    """The one-line message and exit code for an error."""
    if isinstance(exc, UsageError):
        return str(exc), EXIT_USAGE
    if isinstance(exc, persistdict.CorruptError):
        return explain(exc), EXIT_MISSING
    if isinstance(exc, FileNotFoundError):
        return _missing(exc), EXIT_FAILED
    if isinstance(exc, OSError) and not isinstance(exc, persistdict.Error):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{getattr(exc, 'cli_message', None) or exc.strerror or exc}{where}", EXIT_FAILED
    if isinstance(exc, (ValueError, TypeError)):
        return explain(exc), EXIT_USAGE
    if isinstance(exc, (persistdict.Error, ImportError)):
        return explain(exc), EXIT_FAILED
    return f"{type(exc).__name__}: {exc} (run with --debug for the traceback)", EXIT_FAILED


class _Signals:
    """Turns SIGINT and SIGTERM into ``persistdict.migrate.target.Interrupted``, once.
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


# persistdict's own: "No such <what> (<hint>)", the path in ``filename`` (errors.no_such).
_OURS = re.compile(r"No such (?P<what>.+?) \((?P<hint>[^()]*)\)")


def _missing(exc: FileNotFoundError) -> str:
    name = mask_password(str(exc.filename if exc.filename is not None else exc))
    ours = _OURS.fullmatch(exc.strerror or "")
    if ours is None:
        return f"no such file: {name!r}"
    what, hint = ours["what"], ours["hint"]
    if what.startswith("folder"):  # the folder holding the file is missing, not the file
        return f"no such {what} {name!r}; {hint}"
    if "flag=" in hint:  # open()'s flag means nothing here
        hint = "check the path (set, load and convert create it)"
    return f"no such {what}: {name!r}; {hint}"


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    # One line, in the command line's words: the warning of --recover names recover=True.
    text = one_line(str(message)).replace("recover=True", "--recover")
    print(f"persistdict: warning: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    SIGINT (Ctrl-C) and SIGTERM end a command with one line on stderr and exit code 130 or
    143; what was being written is rolled back or left out first.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("default", UserWarning)  # --recover's, each shown once
        warnings.showwarning = _show_warning
        return _run(args)


def _run(args: Any) -> int:
    signals = _Signals()
    COMMIT.done, COMMIT.pending = False, None
    try:
        with signals.installed():
            check_pickle_opt_in(args)
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
        # Every message was made with the password masked; this catches what a driver or a
        # third-party backend let through, in the one line and in --debug's traceback.
        targets = [getattr(args, name, None) for name in ("target", "src", "dst")]
        for target in filter(None, targets):
            redact_exception(exc, target)
        if args.debug:
            raise
        message, code = _describe(exc)
        for target in filter(None, targets):
            message = redact(message, target)
        error(message)
        return code
