"""Every test exercises one and the same persistdict: the one installed in this interpreter.

CI installs the built wheel into a fresh virtual environment and sets
``PERSISTDICT_TEST_INSTALLED=1``; then the package under test must be that install, not the
checkout's ``src/``. In every run, the child processes tests start import the same files as
the tests themselves.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import persistdict
from tests.helpers import subprocess_env

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "python-persistdict"
_WHERE = "import persistdict, sys; print(persistdict.__file__); print(persistdict.__version__)"


def _child(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> list[str]:
    done = subprocess.run(
        [sys.executable, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.split()


@pytest.mark.parametrize("cwd", [None, ROOT], ids=["test-cwd", "checkout-root"])
def test_child_processes_import_the_package_the_tests_import(cwd: Path | None) -> None:
    expected = [str(Path(persistdict.__file__).resolve()), persistdict.__version__]
    for env in (subprocess_env(), None):
        file, version = _child("-c", _WHERE, env=env, cwd=cwd)
        assert [str(Path(file).resolve()), version] == expected


def test_the_command_is_the_same_package_and_version() -> None:
    assert _child("-m", "persistdict", "--version") == [persistdict.__version__]
    script = Path(sys.executable).parent / "persistdict"
    if script.exists():  # installed by pip: the console script of this environment
        done = subprocess.run([script, "--version"], capture_output=True, text=True, check=True)
        assert done.stdout.split() == [persistdict.__version__]


def test_the_version_is_the_installed_distributions() -> None:
    assert importlib.metadata.version(DISTRIBUTION) == persistdict.__version__


@pytest.mark.skipif(
    os.environ.get("PERSISTDICT_TEST_INSTALLED", "") in ("", "0"),
    reason="CI sets PERSISTDICT_TEST_INSTALLED=1 when it tests the installed wheel",
)
def test_the_package_under_test_is_the_installed_wheel_not_the_checkout() -> None:
    imported = Path(persistdict.__file__).resolve()
    assert not imported.is_relative_to(ROOT.resolve()), f"tests import the checkout: {imported}"
    files = importlib.metadata.distribution(DISTRIBUTION).files or []
    installed = {Path(str(f.locate())).resolve() for f in files}
    assert imported in installed, f"{imported} is not a file of the installed {DISTRIBUTION}"
    assert not any(str(ROOT / "src") in entry for entry in sys.path), sys.path


def test_the_changelog_has_a_section_for_this_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    version = persistdict.__version__
    release = version.split(".dev")[0]
    heading = f"## Unreleased ({release})" if ".dev" in version else f"## {version}"
    assert re.search(rf"^{re.escape(heading)}( |$)", text, re.MULTILINE), (
        f"CHANGELOG.md has no '{heading}' section for version {version}"
    )
    sections = re.findall(r"^## (?:Unreleased \()?(\d+\.\d+\.\d+)", text, re.MULTILINE)
    assert sections[0] == release, f"the newest CHANGELOG section is {sections[0]}, not {release}"
