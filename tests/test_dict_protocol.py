"""persistdict.testing.dict_protocol keeps up with CPython's test.mapping_tests."""

from __future__ import annotations

import importlib

import pytest

from persistdict.testing.dict_protocol import CPYTHON_TESTS, DictProtocol


def test_every_cpython_mapping_expectation_is_checked_or_left_out_with_a_reason() -> None:
    try:
        mapping_tests = importlib.import_module("test.mapping_tests")
    except ImportError:  # some Pythons ship without Lib/test
        pytest.skip("this Python has no test.mapping_tests")
    cpython = {
        name
        for cls in (mapping_tests.BasicTestMappingProtocol, mapping_tests.TestMappingProtocol)
        for name in vars(cls)
        if name.startswith("test_")
    }
    assert cpython == set(CPYTHON_TESTS), "update CPYTHON_TESTS in dict_protocol.py"
    for name, ours in CPYTHON_TESTS.items():
        assert ours.startswith("left out: ") or callable(getattr(DictProtocol, ours, None)), name
