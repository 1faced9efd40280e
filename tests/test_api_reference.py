"""The API reference (docs/api.md, rendered by mkdocstrings) documents every public name,
shows no raw reST markup, and draws the error tree as the classes really are.

The source checks run everywhere. The checks of the built site read the site in
``PERSISTDICT_SITE_DIR`` (CI builds it once) or build one when mkdocs is installed (a few
seconds); without either they skip.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import persistdict
import persistdict.errors
import persistdict.migrate
import persistdict.serializers
import persistdict.testing
from persistdict.backends import loaded_classes

ROOT = Path(__file__).resolve().parents[1]
API_PAGE = ROOT / "docs" / "api.md"
# A Sphinx role left in a docstring shows verbatim on the mkdocs site.
RAW_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|exc|data|obj|ref|const):`")
PUBLIC_MODULES: tuple[ModuleType, ...] = (
    persistdict,
    persistdict.errors,
    persistdict.serializers,
    persistdict.migrate,
    persistdict.testing,
)


def public_names() -> dict[str, set[str]]:
    """Each public name, with the dotted paths under which the reference may document it."""
    found: dict[str, set[str]] = {}
    first_path: dict[int, str] = {}  # a class or function exported by two modules: one name
    for module in PUBLIC_MODULES:
        for name in module.__all__:
            obj = getattr(module, name)
            path = f"{module.__name__}.{name}"
            paths = {path}
            if hasattr(obj, "__qualname__") and hasattr(obj, "__module__"):
                paths.add(f"{obj.__module__}.{obj.__qualname__}")
                path = first_path.setdefault(id(obj), path)
            found.setdefault(path, set()).update(paths)
    for cls in loaded_classes(include_third_party=False):
        if not cls.__module__.startswith("persistdict."):
            continue  # registered by a test (tests/test_example_backend.py's FolderBackend)
        path = f"{cls.__module__}.{cls.__qualname__}"
        found.setdefault(path, set()).add(path)
        if hasattr(persistdict, cls.__name__):
            found[path].add(f"persistdict.{cls.__name__}")
    return found


def _resolve(dotted: str) -> Any:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def documented_paths() -> set[str]:
    """The dotted paths the page's ``::: target`` blocks render (a module with its members)."""
    text = API_PAGE.read_text(encoding="utf-8")
    paths: set[str] = set()
    for match in re.finditer(r"^::: (\S+)\n((?:    .*\n)*)", text, re.MULTILINE):
        target, options = match.group(1), match.group(2)
        paths.add(target)
        obj = _resolve(target)
        if isinstance(obj, ModuleType) and "members: false" not in options:
            paths.update(f"{target}.{name}" for name in getattr(obj, "__all__", ()))
    return paths


def test_the_derivation_finds_the_names_the_issue_lists() -> None:
    names = public_names()
    for must in (
        "persistdict.open",
        "persistdict.testing.MappingConformance",
        "persistdict.migrate.copy",
        "persistdict.backends.redis_hash.RedisBackend",
        "persistdict.backends.postgres_table.PostgresBackend",
        "persistdict.backends.lmdb_env.LmdbBackend",
    ):
        assert must in names, sorted(names)


def test_every_public_name_has_an_entry_in_the_api_page() -> None:
    documented = documented_paths()
    missing = sorted(name for name, paths in public_names().items() if not paths & documented)
    assert missing == [], f"docs/api.md has no `::: name` entry for {missing}"


def test_docstrings_hold_no_rest_roles() -> None:
    package = Path(persistdict.__file__).parent
    found = [
        f"{path.relative_to(package)}:{number}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if RAW_ROLE.search(line)
    ]
    assert found == [], "write [`Name`][persistdict.Name] or ``name``, not reST roles:\n" + (
        "\n".join(found)
    )


def test_the_error_tree_is_the_class_hierarchy() -> None:
    text = API_PAGE.read_text(encoding="utf-8")
    assert "```text\nException\n" in text, "docs/api.md draws no error tree"
    tree = text.split("```text\nException\n", 1)[1].split("```", 1)[0]
    drawn: dict[str, tuple[str, list[str]]] = {}  # class -> (drawn parent, extra bases)
    parents = ["Exception"]
    for line in tree.splitlines():
        m = re.match(r"^([ │]*)[└├]── (\S+)\s*(?:\(also ([\w, ]+)\))?$", line)
        assert m, f"not a tree line: {line!r}"
        depth = len(m.group(1)) // 4
        parents[depth + 1 :] = [m.group(2)]
        also = [b.strip() for b in (m.group(3) or "").split(",") if b.strip()]
        drawn[m.group(2)] = (parents[depth], also)
    errors = {
        getattr(module, name)
        for module in PUBLIC_MODULES
        for name in module.__all__
        if isinstance(getattr(module, name), type)
        and issubclass(getattr(module, name), BaseException)
    }
    missing = sorted(cls.__qualname__ for cls in errors - {_resolve(name) for name in drawn})
    assert missing == [], f"errors missing from the tree: {missing}"
    for name, (parent, also) in drawn.items():
        cls = _resolve(name)
        base = Exception if parent == "Exception" else _resolve(parent)
        assert base in cls.__bases__, f"{name} is drawn under {parent}: {cls.__bases__}"
        for extra in also:
            assert getattr(builtins, extra) in cls.__mro__, f"{name} is said to be a {extra}"


# The built site. -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site() -> Path:
    given = os.environ.get("PERSISTDICT_SITE_DIR")
    if given:
        return Path(given)
    if shutil.which("mkdocs") is None and importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install '.[docs]') and no PERSISTDICT_SITE_DIR")
    if not (ROOT / "mkdocs.yml").exists():
        pytest.skip("no mkdocs.yml beside the tests")
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"persistdict-site-{os.getpid()}"
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    return out


def _text(page: Path) -> str:
    """The page's visible text: tags dropped, entities left (roles have none)."""
    raw = page.read_text(encoding="utf-8")
    raw = re.sub(r"<script.*?</script>", " ", raw, flags=re.DOTALL)
    return re.sub(r"<[^>]+>", "", raw)


def test_built_site_shows_no_raw_rest_roles(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 10, f"{site} holds {len(pages)} pages: not a built site"
    found = [
        f"{page.relative_to(site)}: ...{text[max(m.start() - 40, 0) : m.end() + 40]}..."
        for page in pages
        if "/tests/" not in f"/{page.relative_to(site).as_posix()}"
        for text in [_text(page)]
        for m in RAW_ROLE.finditer(text)
    ]
    assert found == [], "\n".join(found)


def test_built_reference_has_an_entry_for_every_public_name(site: Path) -> None:
    html = (site / "api" / "index.html").read_text(encoding="utf-8")
    ids = set(re.findall(r'id="(persistdict[\w.]*)"', html))
    missing = sorted(name for name, paths in public_names().items() if not paths & ids)
    assert missing == [], f"the built API reference has no entry for {missing}"
    # Backend holds what both shapes of backend share (SPEC section 8); listing keys is
    # iter_keys()/count() in today's shape, documented on BackendBase.
    for method in ("get", "set", "delete", "contains", "flush", "close"):
        assert f"persistdict.Backend.{method}" in ids, f"Backend.{method} is not shown"
    for method in ("iter_keys", "count"):
        assert f"persistdict.BackendBase.{method}" in ids, f"BackendBase.{method} is not shown"
