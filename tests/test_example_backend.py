"""The "Writing a backend" page's FolderBackend, added the way a new backend is: its class
(the page's code), one registry entry (here a fixture, undone after each test) and its docs
page. Nothing else in persistdict names it, yet it works through every path a built-in does:
``open()`` by name and by URL scheme, detection, the command line (``info``, ``set``,
``get``, ``check``) and ``convert`` in both directions. It also passes the whole
conformance suite, as the page promises a third-party author.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict import PersistDict, backends
from persistdict.cli import main
from persistdict.detect import detect_backend
from persistdict.testing import MappingConformance
from tests.test_docs import python_blocks

_namespace: dict[str, Any] = {"__name__": "docs_writing_a_backend"}
exec(python_blocks("writing-a-backend.md")[0], _namespace)  # our own docs
FolderBackend = _namespace["FolderBackend"]


@pytest.fixture
def folder_backend() -> Iterator[type[persistdict.BackendBase]]:
    """``FolderBackend`` registered as ``"folder"`` for one test, as a plugin registers it."""
    persistdict.register_backend("folder", FolderBackend)
    try:
        yield FolderBackend
    finally:
        backends._loaded.pop("folder")  # no public way back: a process keeps its backends


class TestFolderConformance(MappingConformance):
    max_key_bytes = 127

    @pytest.fixture(autouse=True)
    def _registered(self, folder_backend: type[persistdict.BackendBase]) -> None:
        pass

    def open_dict(self, folder: Path, **options: Any) -> PersistDict:
        return persistdict.open(folder / "data", backend="folder", **options)


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """Run the command line in this process (where the backend is registered)."""
    code = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.usefixtures("folder_backend")
def test_open_by_name_and_by_url_scheme(tmp_path: Path) -> None:
    with persistdict.open(tmp_path / "by-name", backend="folder") as d:
        d["k"] = {"n": 1}
    url = f"folder:///{tmp_path / 'by-name'}"
    assert detect_backend(url) == "folder"
    with persistdict.open(url, "r") as d:
        assert isinstance(d.backend, FolderBackend)
        assert dict(d) == {"k": {"n": 1}}
    with pytest.raises(TypeError, match="the folder backend does not take table=; it takes: flag"):
        persistdict.open(url, table="other")


@pytest.mark.usefixtures("folder_backend")
def test_the_command_line_reads_what_the_backend_declares(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"folder:///{tmp_path / 'store'}"
    assert cli(capsys, "set", url, "greeting", '"hello"')[0] == 0
    assert cli(capsys, "get", url, "greeting")[:2] == (0, '"hello"\n')
    code, out, _ = cli(capsys, "info", url, "--json")
    assert code == 0
    facts = json.loads(out)
    assert facts == {
        "target": url,
        "backend": "folder",
        "keys": 1,
        "size": len('"hello"'),
        "durability": FolderBackend.durability,
    }
    code, out, _ = cli(capsys, "check", url)
    assert (code, out) == (
        0,
        f"ok: folder {str(tmp_path / 'store')!r}: 1 key, every value readable\n",
    )


@pytest.mark.usefixtures("folder_backend")
def test_convert_into_and_out_of_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "a.json"
    source.write_text(json.dumps({"a": [1, 2], "b": "x"}))
    url = f"folder:///{tmp_path / 'copy'}"
    assert cli(capsys, "convert", source, url, "-q")[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "copy"]  # no scratch left
    with persistdict.open(url, "r") as d:
        assert dict(d) == {"a": [1, 2], "b": "x"}
    # An existing store holding keys is refused, then merged into in one transaction.
    code, _, err = cli(capsys, "convert", source, url)
    assert code == 3
    assert "already holds 2 keys" in err
    assert cli(capsys, "convert", tmp_path / "a.json", url, "--merge", "-q")[0] == 0
    assert cli(capsys, "convert", url, tmp_path / "back.json", "-q")[0] == 0
    assert json.loads((tmp_path / "back.json").read_text()) == {"a": [1, 2], "b": "x"}


def test_the_registration_is_undone_after_a_test() -> None:
    assert "folder" not in persistdict.available_backends()
    with pytest.raises(ValueError, match="no backend handles URLs starting folder://"):
        detect_backend("folder://x")


def test_the_page_registers_the_same_way_as_the_fixture() -> None:
    example = python_blocks("writing-a-backend.md")[1]
    assert 'persistdict.register_backend("folder", FolderBackend)' in example
    assert 'backend="folder"' in example
