"""Fixtures for the local-users tests: folders another uid can reach, and running as it.

These tests need root: they plant files owned by another user (``os.lchown``) and read the
folder as that user (``setpriv`` to uid 65534, "nobody"). Without root they skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

#: The other local user: nobody/nogroup on Debian and most Linux systems.
OTHER_UID = 65534

needs_root = pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to act as another local user",
)


def _folder(mode: int, owner: int | None = None) -> Iterator[Path]:
    # tmp_path sits under a 0700 folder that another uid can't traverse: make one under
    # /tmp (0o1777, traversable by all) instead.
    folder = Path(tempfile.mkdtemp(prefix="persistdict-sec-"))
    try:
        os.chmod(folder, mode)
        if owner is not None:
            os.chown(folder, owner, owner)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A 0755 folder owned by root: another uid may list it and open files in it."""
    yield from _folder(0o755)


@pytest.fixture
def sticky_folder() -> Iterator[Path]:
    """A folder like /tmp (world-writable, sticky), owned by root."""
    yield from _folder(0o1777)


@pytest.fixture
def others_sticky_folder() -> Iterator[Path]:
    """A world-writable sticky folder owned by the other user."""
    yield from _folder(0o1777, OTHER_UID)


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
