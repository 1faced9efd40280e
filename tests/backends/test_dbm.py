from __future__ import annotations

import dbm.dumb
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict import PersistDict
from persistdict.testing import MappingConformance
from tests.backends.test_sqlite import SmallDisk, small_disk  # noqa: F401


class TestDbm(MappingConformance):
    backend_name = "dbm"

    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        return persistdict.open(folder / "shelf", backend="dbm", **options)


# A damaged dbm.dumb index ------------------------------------------------------------------------


def make_dumb(folder: Path, count: int = 5) -> Path:
    """A dbm.dumb database of ``count`` JSON values, as persistdict writes them."""
    path = folder / "shelf"
    with dbm.dumb.open(str(path), "c") as db:
        for i in range(count):
            db[f"k{i}".encode()] = f'"v{i}"'.encode()
    return path


def snapshot(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in path.parent.iterdir() if p.name.startswith("shelf")}


DAMAGE = {
    "cut-mid-line": lambda good: good[:20],
    "NUL-bytes": lambda good: good[:10] + b"\x00\xff\n",
    "not-a-pair": lambda good: b"'k0', 5\n",
    "not-a-tuple": lambda good: b"'k0', 'ab'\n",
    "negative-offset": lambda good: b"'k0', (-5, 5)\n",
    "past-the-dat": lambda good: b"'k0', (99999, 5)\n",
    "huge-size": lambda good: b"'k0', (0, 99999999999)\n",
    "float-offset": lambda good: b"'k0', (0.5, 4)\n",
    "nested": lambda good: b"'k0', " + b"(" * 100 + b")" * 100 + b"\n",
    "first-byte": lambda good: b"5" + good[1:],
    "blank-line": lambda good: b"\n" + good,
}


@pytest.mark.parametrize("flag", ["r", "w", "c"])
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_dumb_index_is_a_corrupt_error_naming_the_file(
    tmp_path: Path, damage: str, flag: str
) -> None:
    path = make_dumb(tmp_path)
    index = Path(f"{path}.dir")
    index.write_bytes(DAMAGE[damage](index.read_bytes()))
    before = snapshot(path)
    for _ in range(2):  # twice: a failed writer open must release its lock
        with pytest.raises(persistdict.CorruptError, match=r"(?i)restore a backup") as caught:
            persistdict.open(path, flag, backend="dbm")
        assert repr(str(path)) in str(caught.value)
    assert snapshot(path) == before


def read_or_corrupt(path: Path) -> str:
    """Open ``path`` read-only and read every item; the ``CorruptError`` message, or ``""``."""
    try:
        with persistdict.open(path, "r", backend="dbm") as d:
            for _key, _value in d.items():  # a value that does not decode: CorruptError
                pass
    except persistdict.CorruptError as exc:
        return str(exc)
    return ""


def test_random_damage_to_a_dumb_index_opens_or_raises_corrupt_error(tmp_path: Path) -> None:
    path = make_dumb(tmp_path, count=30)
    index = Path(f"{path}.dir")
    good = index.read_bytes()
    rng = random.Random(12)
    outcomes = {"opened": 0, "corrupt": 0}
    for trial in range(300):  # a few hundred damaged copies: well under a second
        raw = bytearray(good)
        if trial % 3 == 0:
            raw = raw[: rng.randrange(len(raw))]
        elif trial % 3 == 1:
            for _ in range(rng.randint(1, 4)):
                spot = rng.randrange(len(raw))
                raw[spot] ^= 1 << rng.randrange(8)
        else:
            spot = rng.randrange(len(raw))
            raw[spot:spot] = rng.randbytes(rng.randint(1, 12))
        index.write_bytes(bytes(raw))
        message = read_or_corrupt(path)
        assert not message or repr(str(path)) in message
        outcomes["corrupt" if message else "opened"] += 1
        assert index.read_bytes() == raw
    assert outcomes["corrupt"] > 100, outcomes


@pytest.mark.parametrize("command", ["check", "dump", "keys"])
def test_the_command_line_reports_a_damaged_dumb_index_with_exit_1(
    tmp_path: Path, command: str
) -> None:
    path = make_dumb(tmp_path)
    index = Path(f"{path}.dir")
    index.write_bytes(index.read_bytes()[:20])
    result = subprocess.run(
        [sys.executable, "-m", "persistdict", command, str(path), "--backend", "dbm"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    shown = result.stdout + result.stderr
    assert f"{str(index)!r}, the index of the dbm.dumb database" in shown


# A full disk while dbm.dumb saves its index ------------------------------------------------------


@pytest.mark.parametrize("fault", ["flush", "close"])
def test_a_full_disk_never_damages_the_saved_dumb_index_and_a_retry_saves_everything(
    small_disk: SmallDisk,  # noqa: F811 (the fixture imported above)
    fault: str,
) -> None:
    """dbm.dumb appends each new key to its ``.dir`` in place and rewrites the whole file at
    ``sync()``/``close()`` after renaming the old one away: with the disk full, the index of
    what the last flush saved was left torn (``CorruptError`` at the next open, every key
    lost). The index must be replaced whole or not at all, and the unsaved writes kept for a
    retry once space is freed."""
    path = make_dumb(small_disk.folder, count=0)
    saved = {f"old{i}": "o" * 100 for i in range(100)}
    with persistdict.open(path, backend="dbm") as d:
        d.update(saved)
    index = (small_disk.folder / "shelf.dir").read_bytes()
    small_disk.fill()
    small_disk.free()  # room for some new values, not for all
    (small_disk.folder / "filler").write_bytes(b"\0" * 300_000)
    d = persistdict.open(path, backend="dbm")
    acknowledged = {}
    with pytest.raises(OSError, match="No space left"):
        for i in range(1000):  # bounded: 2 MB of values on a 1 MiB disk
            d[f"new{i}"] = "v" * 2000
            acknowledged[f"new{i}"] = "v" * 2000
    assert acknowledged
    with pytest.raises(OSError, match="No space left"):
        d.flush() if fault == "flush" else d.close()
    assert (small_disk.folder / "shelf.dir").read_bytes() == index
    with persistdict.open(path, backend="dbm", flag="r") as reader:
        assert dict(reader) == saved
    small_disk.free()
    d.close()
    with persistdict.open(path, backend="dbm", flag="r") as reader:
        assert dict(reader) == saved | acknowledged
