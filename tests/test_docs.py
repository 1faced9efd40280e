"""The documentation's code is run, so it can't drift from the library.

Every ``python`` and ``console`` block of every page under ``docs/`` runs, page by page in
document order, in an empty folder: python blocks share one namespace per page, console
blocks are ``$ command`` lines followed by the exact output (stdout and stderr, in the order
a terminal shows them; ``...`` matches anything). A block preceded by an HTML comment
``<!-- not run: reason -->`` is left out. ``bash``/``toml``/``json`` blocks are never run.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict import migrate

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))

_FENCE = re.compile(
    r"(?P<skip><!-- not run: [^>]+-->\n)?^```(?P<lang>[a-z]*)\n(?P<body>.*?)^```",
    re.DOTALL | re.MULTILINE,
)


@dataclass
class Block:
    lang: str
    body: str
    line: int
    skipped: bool


def page_blocks(page: str) -> list[Block]:
    text = (DOCS / page).read_text(encoding="utf-8")
    return [
        Block(m["lang"], m["body"], text.count("\n", 0, m.start("body")) + 1, bool(m["skip"]))
        for m in _FENCE.finditer(text)
    ]


def python_blocks(page: str) -> list[str]:
    return [b.body for b in page_blocks(page) if b.lang == "python"]


def console_steps(body: str) -> list[tuple[str, str]]:
    """``(command, expected output)`` for each ``$ `` line of a console block."""
    steps: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            assert steps, f"console block starts with output, not a '$ ' line: {line!r}"
            steps[-1][1].append(line)
    return [(command, "\n".join(out)) for command, out in steps]


def output_matches(expected: str, actual: str) -> bool:
    pattern = ".*?".join(re.escape(part) for part in expected.rstrip().split("..."))
    return re.fullmatch(pattern, actual.rstrip(), flags=re.DOTALL) is not None


def shell_env(folder: Path) -> dict[str, str]:
    """The environment of console examples: ``persistdict`` and ``python`` are this interpreter."""
    bin_dir = folder / ".bin"
    bin_dir.mkdir(exist_ok=True)
    for name, runs in (("persistdict", "-m persistdict"), ("python", "")):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" {runs} "$@"\n')
        shim.chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONIOENCODING": "utf-8",
        "COLUMNS": "100",
    }


def run_console(page: str, block: Block, folder: Path, env: dict[str, str]) -> None:
    for command, expected in console_steps(block.body):
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
        )
        where = f"{page}:{block.line}: $ {command}"
        assert result.returncode == 0, f"{where}\nexit {result.returncode}\n{result.stdout}"
        assert output_matches(expected, result.stdout), (
            f"{where}\n--- documented ---\n{expected}\n--- printed ---\n{result.stdout}"
        )


@pytest.mark.parametrize("page", PAGES)
def test_every_example_runs(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = shell_env(tmp_path)
    namespace: dict[str, Any] = {"__name__": f"docs_{Path(page).stem}"}
    for block in page_blocks(page):
        if block.skipped:
            continue
        if block.lang == "python":
            code = compile("\n" * (block.line - 1) + block.body, str(DOCS / page), "exec")
            exec(code, namespace)  # our own docs
        elif block.lang == "console":
            run_console(page, block, tmp_path, env)


# The command line page: every command and option the parser has is documented there.

CLI_PAGE = "cli.md"


def _parser_commands() -> dict[str, list[str]]:
    """Each sub-command of the real parser, with the option strings it takes."""
    from persistdict.cli import build_parser

    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {
        name: [s for action in p._actions for s in action.option_strings]
        for name, p in sub.choices.items()
    }


COMMANDS = _parser_commands()


def test_the_parser_has_commands() -> None:
    assert len(COMMANDS) >= 9, COMMANDS  # guards the derivation itself


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_cli_page_documents_every_command_with_an_example(command: str) -> None:
    text = (DOCS / CLI_PAGE).read_text(encoding="utf-8")
    assert re.search(rf"^## {command}$", text, re.MULTILINE), f"{CLI_PAGE} lacks '## {command}'"
    examples = [
        cmd
        for block in page_blocks(CLI_PAGE)
        if block.lang == "console" and not block.skipped
        for cmd, _ in console_steps(block.body)
    ]
    assert any(re.search(rf"\bpersistdict {command}\b", cmd) for cmd in examples), (
        f"{CLI_PAGE} has no run example of `persistdict {command}`"
    )
    for option in COMMANDS[command]:
        assert f"`{option}" in text, f"{CLI_PAGE} lacks {command}'s option {option}"


def test_cli_page_lists_every_exit_code() -> None:
    from persistdict.cli import EXIT_CODES

    text = (DOCS / CLI_PAGE).read_text(encoding="utf-8")
    table = text.split("## Exit codes", 1)[1]
    for code in EXIT_CODES:
        assert re.search(rf"^\| `{code}` \|", table, re.MULTILINE), f"exit code {code} missing"


# The migration page: a guide with a run `convert --from KIND` line for every source kind.


@pytest.mark.parametrize("kind", migrate.KINDS)
def test_migration_page_converts_from_every_kind(kind: str) -> None:
    commands = [
        cmd
        for block in page_blocks("migration.md")
        if block.lang == "console" and not block.skipped
        for cmd, _ in console_steps(block.body)
    ]
    assert any(
        re.match(rf"persistdict convert \S+ \S+ --from {re.escape(kind)}( |$)", c) for c in commands
    ), f"migration.md has no run `persistdict convert SRC DST --from {kind}` example"


# The guarantees page: every claim links to a test; every linked test must exist.

_TEST_LINK = re.compile(r"\]\((tests/[\w/]+\.py)#([^)\s]+)\)")


def linked_tests(page: str) -> set[str]:
    """The pytest node ids (``file::name[param]``) the page links to."""
    text = (DOCS / page).read_text(encoding="utf-8")
    return {f"{path}::{name}" for path, name in _TEST_LINK.findall(text)}


def collected(files: set[str]) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return {line for line in result.stdout.splitlines() if "::" in line}


@pytest.mark.parametrize(("page", "at_least"), [("guarantees.md", 50), ("security.md", 30)])
def test_every_test_linked_from_a_promise_page_exists(page: str, at_least: int) -> None:
    links = linked_tests(page)
    assert len(links) > at_least, "the page should link its claims to tests"
    files = {link.split("::", 1)[0] for link in links}
    missing = sorted(links - collected(files))
    assert missing == [], f"{page} links to tests that don't exist: {missing}"


def test_guarantees_page_covers_every_builtin_backend() -> None:
    text = (DOCS / "guarantees.md").read_text(encoding="utf-8")
    durability, concurrency = text.split("## Durability", 1)[1].split("## Concurrency", 1)
    for name in persistdict.available_backends():
        for table in (durability, concurrency):
            assert re.search(rf"^\| `{name}`", table, re.MULTILINE) or re.search(
                rf"^\| [^|]*`{name}`[^|]*\|", table, re.MULTILINE
            ), f"guarantees.md has no row for {name}"


def test_benchmarks_page_is_the_benchmarks_own_output() -> None:
    text = (DOCS / "benchmarks.md").read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    assert images, "benchmarks.md shows no chart"
    for image in images:
        assert (DOCS / image).stat().st_size > 10_000, f"{image} is missing or empty"
    # The command and the machine facts, as bench_backends.py prints them.
    assert re.search(r"^Command: `python benchmarks/bench_backends.py .*--plot ", text, re.M)
    assert re.search(r"^- CPU: .*cores", text, re.M)
    assert re.search(r"^\| \*\*persistdict sqlite\*\* \| [\d.,]+ \(", text, re.M)


def test_every_page_is_in_the_nav() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = config.split("\nnav:\n", 1)[1].split("\n\n", 1)[0]
    listed = set(re.findall(r"^\s+- [^:]+: (\S+\.md)$", nav, re.MULTILINE))
    assert listed == set(PAGES), f"pages not in mkdocs.yml's nav: {set(PAGES) - listed}"


# The backends page: the iteration order it states for each backend is the one it has.

_ORDER_KEYS = ["b", "a", "é", "B", "", "10", "9", "zz", "a b", "~", "\U0001f600"]


def documented_orders() -> dict[str, str]:
    """Backend name -> the first words of its row in the "Iteration order" table."""
    text = (DOCS / "backends.md").read_text(encoding="utf-8")
    table = text.split("## Iteration order", 1)[1].split("\n## ", 1)[0]
    orders: dict[str, str] = {}
    for names, order in re.findall(r"^\| ((?:`\w+`(?:, )?)+) \| ([^|]+) \|$", table, re.M):
        for name in re.findall(r"`(\w+)`", names):
            orders[name] = order
    return orders


def expected_order(rule: str, keys: list[str]) -> list[str] | None:
    if rule.startswith("insertion"):
        return keys
    if rule.startswith("by key, in code point order"):
        return sorted(keys)
    if rule.startswith("by key, in UTF-8 byte order, except the empty key"):
        return sorted((k for k in keys if k), key=lambda k: k.encode()) + [""] * ("" in keys)
    assert rule.startswith("none defined"), f"backends.md states an order I can't check: {rule}"
    return None


def test_backends_page_states_an_order_for_every_backend() -> None:
    assert set(documented_orders()) == set(persistdict.available_backends())


@pytest.mark.parametrize(
    "name", ["json", "csv", "pickle", "memory", "sqlite", "dbm", "lmdb", "redis", "postgres"]
)
def test_iteration_order_is_the_one_the_backends_page_states(name: str, tmp_path: Path) -> None:
    from tests.helpers import namespace, server_url

    targets: dict[str, tuple[str, dict[str, Any]]] = {
        "json": (str(tmp_path / "d.json"), {}),
        "csv": (str(tmp_path / "d.csv"), {}),
        "pickle": (str(tmp_path / "d.pkl"), {"backend": "pickle"}),
        "memory": ("memory://", {}),
        "sqlite": (str(tmp_path / "d.db"), {}),
        "dbm": (str(tmp_path / "d"), {"backend": "dbm"}),
        "lmdb": (str(tmp_path / "d.lmdb"), {}),
    }
    if name == "redis":
        targets[name] = (server_url("redis"), {"prefix": namespace("redis", tmp_path)})
    if name == "postgres":
        targets[name] = (server_url("postgres"), {"table": namespace("postgres", tmp_path)})
    target, options = targets[name]
    d = persistdict.open(target, **options)
    try:
        for key in _ORDER_KEYS:
            d[key] = "v"
        del d["b"]
        d["b"] = "again"  # moves to the end where the order is insertion
        written = [k for k in _ORDER_KEYS if k != "b"] + ["b"]
        seen = [list(d)]
        if name != "memory":
            d.close()
            d = persistdict.open(target, "r", **options)
            seen.append(list(d))
    finally:
        d.close()
    expected = expected_order(documented_orders()[name], written)
    for order in seen:
        assert sorted(order) == sorted(written)
        if expected is not None:
            assert order == expected


def test_benchmark_chart_links_its_full_size_and_labels_every_row_with_its_durability() -> None:
    text = (DOCS / "benchmarks.md").read_text(encoding="utf-8")
    assert re.search(r"\[!\[[^\]]+\]\(img/benchmarks\.png\)\]\(img/benchmarks\.png\)", text)
    assert "Each panel is one workload" in text
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_backends
        import run_all
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    results, labels, promises = run_all.read_page(text)
    assert results, "the page holds no table of results"
    assert set(results[min(results)]) == set(labels)
    assert len(labels) >= 10
    tags = {label: bench_backends.durability_tag(promises[label]) for label in labels}
    assert tags["persistdict json"] == "fsynced"
    assert tags["persistdict lmdb"] == "no fsync per write"  # LMDB sync=False
    assert tags["dict"] == "memory only"


# The distribution is python-persistdict: the index's "persistdict" is another library.

_OLD_NAME = re.compile(r"""pip install (?:-\S+ )*['"]?persistdict(?![\w-])""")


def test_every_install_line_names_the_distribution_python_persistdict() -> None:
    package = Path(persistdict.__file__).parent
    places = [ROOT / "README.md", *sorted(DOCS.rglob("*.md")), *sorted(package.rglob("*.py"))]
    wrong = [
        f"{path.name}:{number}: {line.strip()}"
        for path in places
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _OLD_NAME.search(line)
    ]
    assert wrong == [], "install python-persistdict, not persistdict:\n" + "\n".join(wrong)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip install python-persistdict" in readme
    assert re.search(r"index's `persistdict` project is another library", readme)
