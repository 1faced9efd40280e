"""Run a Python snippet under strace and parse the file-system calls it made between two marks.

The snippet calls ``mark("begin")`` and ``mark("end")`` around the part of interest (each is an
``access()`` of a path that doesn't exist, which shows in the trace and changes nothing). With
``-xx`` strace prints every string in hex, so paths and written bytes parse exactly.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

TRACED = (
    "open,openat,creat,write,pwrite64,writev,fsync,fdatasync,sync_file_range,close,"
    "rename,renameat,renameat2,link,linkat,unlink,unlinkat,ftruncate,access,faccessat,faccessat2"
)
PRELUDE = "import os\ndef mark(what):\n    os.access('/persistdict-mark-' + what, os.F_OK)\n"
_LINE = re.compile(r"^\d+\s+(\w+)\((.*)\)\s+=\s+(-?\d+)")
_STRING = re.compile(r'"((?:\\x[0-9a-f]{2})*)"')


@dataclass(frozen=True)
class Call:
    """One system call: ``args`` holds ``bytes`` for quoted strings, ``str`` for the rest."""

    name: str
    args: tuple[bytes | str, ...]
    result: int

    def path(self, index: int) -> str:
        arg = self.args[index]
        assert isinstance(arg, bytes), f"argument {index} of {self} is not a string"
        return os.fsdecode(arg)

    def fd(self, index: int = 0) -> int:
        return int(self.args[index])


def strace_or_skip() -> str:
    """The strace binary; without it skip, except in CI, where ``.ci/run`` installs it."""
    found = shutil.which("strace")
    if found is None:
        message = "strace is not installed (apt-get install strace); .ci/run installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _split_args(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    if text.strip():
        parts.append(text[start:].strip())
    return parts


def _parse_arg(text: str) -> bytes | str:
    found = _STRING.fullmatch(text)
    if found is None:
        return text
    return bytes.fromhex(found.group(1).replace("\\x", ""))


# The *at variants relative to the working folder, as the plain call they stand for (aarch64
# has only the *at ones; x86-64 glibc mixes both).
_PLAIN = {
    "openat": ("open", (1, 2, 3)),
    "renameat": ("rename", (1, 3)),
    "renameat2": ("rename", (1, 3)),
    "linkat": ("link", (1, 3)),
    "unlinkat": ("unlink", (1,)),
    "faccessat": ("access", (1, 2)),
    "faccessat2": ("access", (1, 2)),
}


def _plain(name: str, args: tuple[bytes | str, ...]) -> tuple[str, tuple[bytes | str, ...]]:
    if name in _PLAIN and args[0] == "AT_FDCWD":
        plain, keep = _PLAIN[name]
        return plain, tuple(args[i] for i in keep if i < len(args))
    return name, args


def parse(log: str) -> list[Call]:
    """Every completed call in an ``strace -f -xx`` log, in order, *at forms made plain."""
    calls = []
    for line in log.splitlines():
        found = _LINE.match(line)
        if found:
            name, args, result = found.groups()
            name, parsed = _plain(name, tuple(_parse_arg(a) for a in _split_args(args)))
            calls.append(Call(name, parsed, int(result)))
    return calls


def between_marks(calls: list[Call]) -> list[Call]:
    names = [c.path(0) if c.name == "access" else "" for c in calls]
    begin = names.index("/persistdict-mark-begin")
    end = names.index("/persistdict-mark-end")
    return calls[begin + 1 : end]


def trace(snippet: str, folder: Path) -> list[Call]:
    """Run ``snippet`` (after :data:`PRELUDE`) in ``folder`` under strace; return the calls
    between its marks. Fails the test if the snippet fails."""
    strace = strace_or_skip()
    log = folder / "strace.log"
    options = ["-f", "-qq", "-xx", "-s", str(1 << 22), "-e", f"trace={TRACED}", "-o", str(log)]
    done = subprocess.run(
        [strace, *options, sys.executable, "-c", PRELUDE + snippet],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        pytest.fail(f"the traced snippet failed ({done.returncode}):\n{done.stderr}")
    text = log.read_text()
    log.unlink()
    return between_marks(parse(text))
