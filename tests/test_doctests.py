"""The examples in the package's docstrings run and print what they show.

They are found in the persistdict this interpreter imports: the installed wheel in CI
(``PERSISTDICT_TEST_INSTALLED=1``), the checkout's ``src/`` in an editable install; pytest's
``--doctest-modules`` would import the checkout's files in both.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import persistdict


def _modules() -> list[str]:
    """Every module of the package except ``__main__`` (importing it runs the command)."""
    names = ["persistdict"]
    for info in pkgutil.walk_packages(persistdict.__path__, "persistdict."):
        if info.name.rsplit(".", 1)[-1] != "__main__":
            names.append(info.name)
    return names


def _examples() -> list[doctest.DocTest]:
    """The docstrings with an example that runs (not all marked ``+SKIP``), by name."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    found: dict[str, doctest.DocTest] = {}
    for name in _modules():
        for test in finder.find(importlib.import_module(name)):
            if any(not example.options.get(doctest.SKIP) for example in test.examples):
                found[test.name] = test
    return [found[name] for name in sorted(found)]


EXAMPLES = _examples()


def test_the_package_docstring_example_is_found() -> None:
    # Guards the search: the examples below are the ones the package really has.
    assert "persistdict" in [test.name for test in EXAMPLES]


@pytest.mark.parametrize("test", EXAMPLES, ids=[test.name for test in EXAMPLES])
def test_docstring_example(test: doctest.DocTest) -> None:
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    result = runner.run(test, out=report.append, clear_globs=True)
    assert result.failed == 0, "".join(report)
    assert result.attempted > 0
