"""Helpers for the local-users tests: the other user, planting files as it, running as it.

They need root (``os.lchown``, ``setpriv`` to uid 65534, "nobody"); ``needs_root`` skips a
test without it. The folders such tests work in are fixtures, in conftest.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

#: The other local user: nobody/nogroup on Debian and most Linux systems.
OTHER_UID = 65534

needs_root = pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to act as another local user",
)


def plant_symlink(link: Path, target: Path, owner: int = OTHER_UID) -> Path:
    """A symlink at ``link`` to ``target`` owned by ``owner``, as if that user had made it."""
    link.symlink_to(target)
    os.lchown(link, owner, owner)
    return link


def run_as_other(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` (stdlib only) as the other user, with ``args`` in ``sys.argv[1:]``."""
    command = ["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups"]
    return subprocess.run(
        [*command, sys.executable, "-I", "-S", "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
