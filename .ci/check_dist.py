"""Check the built sdist and wheel hold what users install, and nothing else.

Usage: python .ci/check_dist.py DIST_DIR  (the folder ``python -m build`` wrote to).

The wheel must hold every module of src/persistdict (the testing/ package and py.typed
included) and no tests/, benchmarks/ or examples/; its metadata must carry the distribution
name, the version of src/persistdict/__init__.py, the licence, the Python versions CI tests
and the ``persistdict`` command. Exits 1 listing every problem found.
"""

from __future__ import annotations

import ast
import sys
import tarfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "persistdict"
NAME = "python-persistdict"
PYTHONS = ("3.10", "3.11", "3.12", "3.13")


def source_version() -> str:
    """``__version__`` as written in src/persistdict/__init__.py (read, not imported)."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            if isinstance(value, str):
                return value
    raise SystemExit(f"no __version__ = '...' in {PACKAGE / '__init__.py'}")


def check_wheel(wheel: Path, version: str) -> list[str]:
    problems: list[str] = []
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = f"python_persistdict-{version}.dist-info"
        metadata = HeaderParser().parsestr(zf.read(f"{info}/METADATA").decode("utf-8"))
        entry_points = zf.read(f"{info}/entry_points.txt").decode("utf-8")
    expected = {
        "persistdict/" + p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix in (".py", ".typed")
    }
    for must in ("persistdict/py.typed", "persistdict/testing/__init__.py"):
        if must not in expected:
            problems.append(f"src/ has no {must}: the check itself is out of date")
    problems += [f"wheel lacks {name}" for name in sorted(expected - names)]
    for name in sorted(names):
        top = name.split("/", 1)[0]
        if top not in ("persistdict", info):
            problems.append(f"wheel holds {name}, outside the persistdict package")
        elif "__pycache__" in name or name.endswith(".pyc"):
            problems.append(f"wheel holds compiled file {name}")
    wanted = {
        "Name": NAME,
        "Version": version,
        "License-Expression": "MIT",
        "Requires-Python": ">=3.10",
    }
    for field, value in wanted.items():
        if metadata.get(field) != value:
            problems.append(f"wheel metadata {field} is {metadata.get(field)!r}, not {value!r}")
    classifiers = set(metadata.get_all("Classifier") or [])
    for python in PYTHONS:
        if f"Programming Language :: Python :: {python}" not in classifiers:
            problems.append(f"no classifier for Python {python}")
    if not any(c.startswith("Operating System ::") for c in classifiers):
        problems.append("no Operating System classifier")
    urls = metadata.get_all("Project-URL") or []
    if not any(u.startswith("Changelog, ") for u in urls) or len(urls) < 3:
        problems.append(f"project URLs incomplete: {urls}")
    if "persistdict = persistdict.cli:main" not in entry_points:
        problems.append("the persistdict command is not among the wheel's entry points")
    if f"{info}/licenses/LICENSE" not in names:
        problems.append("the wheel does not carry LICENSE")
    return problems


def check_sdist(sdist: Path, version: str) -> list[str]:
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    return [
        f"sdist lacks {name}"
        for name in ("pyproject.toml", "README.md", "LICENSE", "src/persistdict/py.typed")
        if name not in names
    ]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    dist = Path(argv[0])
    version = source_version()
    wheels = sorted(dist.glob("python_persistdict-*.whl"))
    sdists = sorted(dist.glob("python_persistdict-*.tar.gz"))
    if [w.name for w in wheels] != [f"python_persistdict-{version}-py3-none-any.whl"]:
        print(f"check_dist: expected one pure-Python wheel of {version} in {dist}: {wheels}")
        return 1
    if [s.name for s in sdists] != [f"python_persistdict-{version}.tar.gz"]:
        print(f"check_dist: expected one sdist of {version} in {dist}: {sdists}")
        return 1
    problems = check_wheel(wheels[0], version) + check_sdist(sdists[0], version)
    for problem in problems:
        print(f"check_dist: {problem}")
    if problems:
        return 1
    print(f"check_dist: {wheels[0].name} and {sdists[0].name} ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
