from __future__ import annotations

import pytest

from tests.durability.evidence import LINES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if LINES:
        terminalreporter.section("durability evidence")
        for line in LINES:
            terminalreporter.write_line(line)
