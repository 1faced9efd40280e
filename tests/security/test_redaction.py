"""Passwords in URLs appear nowhere: not in repr, str, any exception of an error's chain (its
args and formatted traceback included), log records, or the command line's output.

The corpus covers every form issue 11 lists, for ``redis://``, ``rediss://`` and
``postgresql://``, against the real test servers and against a port nobody listens on. The
secrets are two distinctive tokens; a form may hold both (``S1#S2``), and neither may show.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict.cli import main
from persistdict.urls import check_url, mask_password, redact, redact_exception
from tests.helpers import namespace, server_url, subprocess_env

S1, S2 = "Zq7SecretA", "Wk9SecretB"

# {s}: scheme, {u}: user name, {h}: host, port and database.
FORMS = {
    "userinfo": "{s}://{u}:" + S1 + "@{h}",
    "no-user": "{s}://:" + S1 + "@{h}",
    "query-password": "{s}://{u}@{h}?password=" + S1,
    "query-passfile": "{s}://{u}@{h}?passfile=" + S1,
    "query-sslpassword": "{s}://{u}@{h}?sslpassword=" + S1,
    "query-bad-escape": "{s}://{u}@{h}?password=" + S1 + "%zz" + S2,
    "bad-escape": "{s}://{u}:" + S1 + "%zz" + S2 + "@{h}",
    "unescaped-hash": "{s}://{u}:" + S1 + "#" + S2 + "@{h}",
    "unescaped-question": "{s}://{u}:" + S1 + "?" + S2 + "@{h}",
    "unescaped-slash": "{s}://{u}:" + S1 + "/" + S2 + "@{h}",
    "unescaped-at": "{s}://{u}:" + S1 + "@" + S2 + "@{h}",
    "escaped-hash": "{s}://{u}:" + S1 + "%23" + S2 + "@{h}",
    # Drivers %-decode query names too: libpq and redis-py both read these as ``password``.
    "query-escaped-name": "{s}://{u}@{h}?pass%77ord=" + S1,
    "query-escaped-first-letter": "{s}://{u}@{h}?%70assword=" + S1,
    # A %-escape that is not UTF-8: psycopg raised a bare UnicodeDecodeError holding it.
    "non-utf8-escape": "{s}://{u}:%E2%82" + S1 + "@{h}",
}
SCHEMES = {"redis": "redis", "rediss": "redis", "postgresql": "postgres"}


def corpus_url(scheme: str, form: str, reachable: bool) -> str:
    kind = SCHEMES[scheme]
    url = server_url(kind)  # skips without the server
    if kind == "redis":
        host = "127.0.0.1:6379/0" if reachable else "127.0.0.1:1/0"
        user = "user"
    else:
        host = url.split("@", 1)[1] if reachable else "127.0.0.1:1/test"
        user = url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[0]
    url = FORMS[form].format(s=scheme, u=user, h=host)
    if kind == "redis":  # rediss:// to a plain server waits for a TLS handshake: not long
        url += ("&" if "?" in url else "?") + "socket_timeout=0.5&retries=0"
    return url


def leaks(text: str) -> list[str]:
    return [secret for secret in (S1, S2) if secret in text]


def everything_shown(exc: BaseException) -> str:
    """All an error can show: each exception of its chain (causes and contexts, suppressed
    or not) as str, repr, args and formatted traceback."""
    parts, seen, todo = [], set(), [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        parts += [str(current), repr(current), repr(current.args)]
        parts += traceback.format_exception(current)
        parts += [repr(getattr(current, "__notes__", None))]
        if isinstance(current, OSError):
            parts += [repr((current.strerror, current.filename, current.filename2))]
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
    return "\n".join(parts)


@contextlib.contextmanager
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    for name in ("persistdict", "redis", "psycopg"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield


def _options(scheme: str, folder: Path) -> dict[str, Any]:
    kind = SCHEMES[scheme]
    if kind == "redis":
        return {"prefix": namespace("redis", folder), "timeout": 2}
    return {"table": namespace("postgres", folder), "timeout": 2}


def open_and_use(url: str, scheme: str, folder: Path, caplog: pytest.LogCaptureFixture) -> str:
    """Everything opening ``url``, writing, reading and closing shows: the dict's repr and
    description, or the whole error; and every log record at DEBUG meanwhile."""
    shown: list[str] = []
    with debug_logs(caplog):
        try:
            d = persistdict.open(url, **_options(scheme, folder))
            try:
                shown += [repr(d), str(d), d.backend.describe()]
                d["k"] = 1
                shown += [repr(d["k"]), repr(len(d)), repr(list(d))]
            finally:
                d.close()
            shown.append(repr(d))
        except Exception as exc:
            shown.append(everything_shown(exc))
    shown.append(caplog.text)
    return "\n".join(shown)


CASES = [
    pytest.param(scheme, form, reachable, id=f"{scheme}-{form}-{'up' if reachable else 'down'}")
    for scheme in SCHEMES
    for form in FORMS
    for reachable in (True, False)
]


@pytest.mark.parametrize(("scheme", "form", "reachable"), CASES)
def test_open_and_use_never_show_the_password(
    scheme: str, form: str, reachable: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = open_and_use(corpus_url(scheme, form, reachable), scheme, tmp_path, caplog)
    assert not leaks(text), text


@pytest.mark.parametrize(("scheme", "form", "reachable"), CASES)
def test_cli_output_never_shows_the_password(
    scheme: str, form: str, reachable: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = corpus_url(scheme, form, reachable)
    table = [] if SCHEMES[scheme] == "redis" else ["--table", "pdtest_no_such_table"]
    out_file = str(tmp_path / "out.json")
    shown = []
    # Commands that only read the URL: the corpus must not write to the servers' tables.
    for argv in (
        ["info", url],
        ["get", url, "k"],
        ["keys", url],
        ["check", url],
        ["convert", url, out_file],
        ["convert", url, out_file, "--from", "sqlitedict"],
    ):
        main([*argv, *table, "--timeout", "2"])
        try:
            main(["--debug", *argv, *table, "--timeout", "2"])
        except Exception as exc:  # what Python prints for an uncaught error
            shown.append("".join(traceback.format_exception(exc)))
    out, err = capsys.readouterr()
    text = "\n".join([out, err, *shown])
    assert not leaks(text), text


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("form", FORMS)
def test_a_real_cli_process_with_debug_never_shows_the_password(scheme: str, form: str) -> None:
    url = corpus_url(scheme, form, reachable=form.startswith("query"))
    result = subprocess.run(
        [sys.executable, "-m", "persistdict", "--debug", "info", url, "--timeout", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(),
    )
    assert not leaks(result.stdout + result.stderr), result


# The function itself, on what drivers say.

ODD = "redis://user:" + S1 + "#" + S2 + "@127.0.0.1:6379/0"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (ODD, f"Port could not be cast to integer value as '{S1}'"),  # urllib, redis-py
        (ODD, f'invalid URI query parameter: "{S2}@127.0.0.1:6379/0"'),  # libpq
        (
            f"postgresql://u:{S1}%zz{S2}@h/db",
            f'invalid percent-encoded token: "{S1}%zz{S2}"',  # libpq
        ),
        (f"postgresql://u:{S1}@{S2}@h/db", f"failed to resolve host '{S2}@h'"),  # libpq
        (f"postgresql://u@h/db?password={S1}", f"password={S1} was refused"),
        (f"postgresql://u@h/db?sslpassword={S1}&x=1", f"could not use {S1}"),
        (f"redis://u:{S1}%23{S2}@h/0", f"AUTH u {S1}#{S2}"),  # the decoded form
        (f"rediss://:{S1}@h/0", f"rediss://:{S1}@h/0 failed"),
    ],
    ids=[
        "port-cast",
        "libpq-query",
        "libpq-percent",
        "libpq-host",
        "query-password",
        "query-sslpassword",
        "decoded",
        "whole-url",
    ],
)
def test_redact_masks_what_drivers_echo(target: str, message: str) -> None:
    assert not leaks(redact(message, target))
    assert "***" in redact(message, target)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (ODD, "redis://user:***@127.0.0.1:6379/0"),
        (
            f"postgresql://app@db/x?password={S1}&sslmode=require",
            "postgresql://app@db/x?password=***&sslmode=require",
        ),
        (
            f"postgresql://app@db/x?sslmode=require&PASSFILE={S1}",
            "postgresql://app@db/x?sslmode=require&PASSFILE=***",
        ),
        (
            f"postgresql://app:{S1}@db/x?sslpassword={S2}",
            "postgresql://app:***@db/x?sslpassword=***",
        ),
        (f"postgresql://app:{S1}@{S2}@db/x", "postgresql://app:***@db/x"),
        (f"postgresql://app@db/x?pass%77ord={S1}", "postgresql://app@db/x?pass%77ord=***"),
        (f"redis://db/0?x=1&%50ASSWORD={S1}", "redis://db/0?x=1&%50ASSWORD=***"),
        ("redis://cache.internal:6379/0", "redis://cache.internal:6379/0"),
        ("state.json", "state.json"),
    ],
    ids=[
        "hash",
        "password",
        "PASSFILE",
        "sslpassword",
        "at",
        "escaped-name",
        "escaped-upper-name",
        "no-password",
        "path",
    ],
)
def test_mask_password_of_odd_urls(url: str, shown: str) -> None:
    assert mask_password(url) == shown


def _chain(url: str) -> ConnectionError:
    """A three-deep chain whose every level holds a secret somewhere different."""
    try:
        try:
            try:
                raise OSError(2, f"no {S1} here", f"/tmp/{S2}")
            except OSError as inner:
                raise KeyError(f"{S2}") from inner
        except KeyError as middle:
            error = ConnectionError(f"can't reach {url}")
            # add_note() is Python 3.11+; __notes__ is what it sets (and what tracebacks show).
            error.__notes__ = [f"note {S1}"]
            raise error from middle
    except ConnectionError as exc:
        return exc
    raise AssertionError("unreachable")


def test_redact_exception_masks_the_whole_chain_in_place() -> None:
    url = f"postgresql://u:{S1}@h/db?password={S2}"
    exc = _chain(url)
    assert leaks(everything_shown(exc))  # the test data does leak before
    assert redact_exception(exc, url) is exc
    assert not leaks(everything_shown(exc))
    assert "postgresql://u:***@h/db?password=***" in str(exc)
    assert isinstance(exc.__cause__, KeyError)  # the chain is kept, only masked
    assert isinstance(exc.__cause__.__cause__, OSError)
    assert exc.__cause__.__cause__.errno == 2


@pytest.mark.parametrize(
    ("form", "problem"),
    [
        pytest.param("unescaped-hash", "comes after the host", id="unescaped-hash"),
        pytest.param("unescaped-question", "comes after the host", id="unescaped-question"),
        pytest.param("unescaped-slash", "comes after the host", id="unescaped-slash"),
        pytest.param("unescaped-at", "holds an '@'", id="unescaped-at"),
        pytest.param("bad-escape", "not a %-escape", id="bad-escape"),
        pytest.param("query-bad-escape", "not a %-escape", id="query-bad-escape"),
        pytest.param("non-utf8-escape", "not UTF-8", id="non-utf8-escape"),
    ],
)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_url_that_would_reach_the_driver_mangled_is_refused_saying_how_to_fix_it(
    scheme: str, form: str, problem: str
) -> None:
    url = FORMS[form].format(s=scheme, u="app", h="db.internal/0")
    with pytest.raises(ValueError, match="Percent-encode") as info:
        check_url(url)
    assert problem in str(info.value)
    assert f"{scheme}://app" in str(info.value)
    assert not leaks(str(info.value))


ODD_FORMS = [form for form in FORMS if "unescaped" in form or "bad-escape" in form]


@pytest.mark.parametrize("reachable", [True, False], ids=["up", "down"])
@pytest.mark.parametrize("form", ODD_FORMS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_driver_errors_are_masked_even_without_the_up_front_refusal(
    scheme: str,
    form: str,
    reachable: bool,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """check_url() refuses these URLs before any driver sees them; with it switched off the
    drivers get them and echo their pieces, and redaction alone must still hide them."""
    from persistdict.backends import postgres_table, redis_hash

    monkeypatch.setattr(redis_hash, "check_url", lambda url: None)
    monkeypatch.setattr(postgres_table, "check_url", lambda url: None)
    text = open_and_use(corpus_url(scheme, form, reachable), scheme, tmp_path, caplog)
    assert not leaks(text), text


@pytest.mark.parametrize("kind", ["sqlitedict", "diskcache", "shelve", "permadict"])
def test_an_importer_given_a_url_names_it_masked(kind: str, tmp_path: Path) -> None:
    from persistdict import migrate

    with pytest.raises(ValueError, match="give its path") as info:
        migrate.copy(f"redis://:{S1}@h/0", tmp_path / "out.json", source=kind)
    assert "redis://:***@h/0" in str(info.value)
    assert not leaks(everything_shown(info.value))
