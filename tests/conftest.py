"""Shared fixtures: the hypothesis profile, and the removal of what tests stored on the Redis
and PostgreSQL test servers (see tests/helpers.py, which the tests import)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.helpers import remove_stale_namespaces, remove_used_namespaces

# No per-example deadline: on a loaded two-core CI machine a 200 ms deadline fails tests whose
# examples are correct but slow; every property test bounds its size by max_examples instead.
settings.register_profile("persistdict", deadline=None)
settings.load_profile("persistdict")


@pytest.fixture(scope="session", autouse=True)
def _remove_stale_test_data() -> None:
    remove_stale_namespaces()


@pytest.fixture(autouse=True)
def _remove_test_data() -> Iterator[None]:
    yield
    remove_used_namespaces()
