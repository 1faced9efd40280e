"""The real ``persistdict`` command line, signalled by itself in the middle of moving a
finished copy into place: ``python killed_mid_move.py SIGNAL convert SRC DST ...``.

With ``KILL`` it dies (SIGKILL) right after the first rename: the worst moment for a copy
kept in several files (dbm.dumb's .dat, .dir and .bak), as the renames are not one step.
With ``TERM`` or ``INT`` it sends itself that signal just before the first rename, while
the copy is being made final.
"""

from __future__ import annotations

import os
import signal
import sys

import persistdict.cli
from persistdict.migrate import target

_replace = os.replace
_signal = signal.Signals["SIG" + sys.argv[1]]


def _replace_signalled(src: str, dst: str) -> None:
    # Out of a scratch folder into the destination's (not a backend's own rename inside it).
    in_scratch = target.SCRATCH_MARKER in str(src) and target.SCRATCH_MARKER not in str(dst)
    if in_scratch and _signal != signal.SIGKILL:
        os.kill(os.getpid(), _signal)
    _replace(src, dst)
    if in_scratch and _signal == signal.SIGKILL:
        os.kill(os.getpid(), signal.SIGKILL)


target.os.replace = _replace_signalled  # type: ignore[attr-defined]
sys.exit(persistdict.cli.main(sys.argv[2:]))
