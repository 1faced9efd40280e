"""The ``persistdict`` command line (placeholder until the CLI lands: prints usage)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = """usage: persistdict COMMAND TARGET [KEY [VALUE]]

commands: get, set, del, keys, dump, load, convert, check, info
(not implemented yet in this version)
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    sys.stderr.write(USAGE)
    return 0 if args in ([], ["-h"], ["--help"]) else 2
