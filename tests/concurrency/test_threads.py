"""Many threads on one shared dict, per backend: no lost write, no error, nothing repeated.

Run longer by hand: ``PERSISTDICT_STRESS=50 python -m pytest tests/concurrency -k threads``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from persistdict.testing import MappingConformance
from tests.concurrency.harness import (
    case_backend,
    case_id,
    conformance_cases,
    hammer_threads,
    stress,
)

CASES = conformance_cases()


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_threads_share_one_dict_without_losing_writes(
    case: type[MappingConformance], tmp_path: Path
) -> None:
    conformance = case()
    d = conformance.open_dict(tmp_path)
    try:
        # The backend the case names, by which the other concurrency tests pick their cases.
        assert d.backend.name == case_backend(case).name == case.backend_name
        expected, _ = hammer_threads(d, conformance.value, ops=250 * stress())
        assert dict(d) == expected
        assert len(d) == len(expected)
    finally:
        d.close()
    if conformance.persistent:
        with conformance.open_dict(tmp_path, flag="r") as reopened:
            assert dict(reopened) == expected


def test_lock_false_is_the_single_thread_fast_path(tmp_path: Path) -> None:
    # lock=False drops only the dict's own lock: one thread sees every behaviour unchanged.
    case = next(c for c in CASES if case_id(c) == "sqlite")()
    with case.open_dict(tmp_path, lock=False) as d:
        expected, _ = hammer_threads(d, case.value, threads=1, ops=300)
        assert dict(d) == expected
