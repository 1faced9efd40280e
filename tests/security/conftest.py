"""Fixtures for the local-users tests: folders another uid can reach (see helpers.py for the
other user and running as it).

These tests need root: they plant files owned by another user (``os.lchown``) and read the
folder as that user (``setpriv`` to uid 65534, "nobody"). Without root they skip.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.helpers import OTHER_UID


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
