"""A conformance class's capability flags decide which tests pytest collects for it: a test its
flags rule out is not there at all (no skip in every run), and a subclass that sets the flag
back gets it again."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import run_pytest_on

_SUITE = """
import persistdict
from persistdict.testing import MappingConformance


class TestInMemory(MappingConformance):
    persistent = False
    file_based = False

    def open_dict(self, folder, **options):
        return persistdict.open("memory://", **options)


class TestInAFile(TestInMemory):
    persistent = True
    file_based = True

    def open_dict(self, folder, **options):
        return persistdict.open(folder / "d.json", **options)


class TestText(MappingConformance):
    str_values_only = True
    live_objects = True

    def open_dict(self, folder, **options):
        return persistdict.open(folder / "d.csv", **options)
"""


def _collected(tmp_path: Path) -> dict[str, set[str]]:
    done = run_pytest_on(tmp_path / "test_suite.py", _SUITE, "--co")
    assert done.returncode == 0, done.stdout + done.stderr
    found: dict[str, set[str]] = {}
    for line in done.stdout.splitlines():
        if line.startswith("test_suite.py::"):
            _, cls, test = line.split("::")
            found.setdefault(cls, set()).add(test.split("[")[0])
    return found


def test_flags_leave_tests_out_at_collection_and_a_subclass_brings_them_back(
    tmp_path: Path,
) -> None:
    found = _collected(tmp_path)
    needs_data_kept = {
        "test_values_survive_reopen",
        "test_flag_n_starts_empty",
        "test_read_only_refuses_writes_and_keeps_data",
    }
    assert not needs_data_kept & found["TestInMemory"]
    assert "test_missing_target_with_flag_r_or_w" not in found["TestInMemory"]
    assert needs_data_kept <= found["TestInAFile"]
    assert "test_missing_target_with_flag_r_or_w" in found["TestInAFile"]
    assert found["TestInAFile"] - found["TestInMemory"] == {
        *needs_data_kept,
        "test_missing_target_with_flag_r_or_w",
    }
    text_only = {
        "test_nested_change_semantics",
        "test_writeback_saves_nested_changes",
        "test_dict_protocol_setdefault",
    }
    assert not text_only & found["TestText"]
    assert text_only <= found["TestInMemory"]
    # Tests no flag rules out are collected in every class.
    assert "test_set_get_overwrite_delete" in found["TestText"] & found["TestInMemory"]
