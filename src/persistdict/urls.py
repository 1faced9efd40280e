"""Target strings: telling URLs from paths, and masking passwords for display."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

__all__ = [
    "check_url",
    "driver_errors",
    "mask_password",
    "parse_bool",
    "redact",
    "redact_exception",
    "redacted_errors",
    "redacted_logs",
    "split_scheme",
    "url_options",
    "url_path",
]

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")


def split_scheme(target: str) -> tuple[str | None, str]:
    """Return ``(scheme, rest)`` for ``scheme://rest``, or ``(None, target)`` for a path.

    A one-letter scheme is a Windows drive (``C://x`` is a path), not a URL.
    """
    match = _SCHEME.match(target)
    if match is None or len(match.group(1)) == 1:
        return None, target
    return match.group(1).lower(), target[match.end() :]


def url_path(target: str) -> str:
    """The file path of a file-backed URL: ``sqlite:///rel.db`` -> ``rel.db``,
    ``sqlite:////abs.db`` -> ``/abs.db`` (the SQLAlchemy convention), ``sqlite://x.db`` -> ``x.db``.
    """
    _, rest = split_scheme(target)
    rest = rest.split("?", 1)[0]
    return rest[1:] if rest.startswith("/") else rest


# Query parameters whose value is a secret (libpq's names; redis-py reads ``password`` too).
# Both drivers %-decode a parameter's name before reading it, so ``pass%77ord`` is one too.
_SECRET_NAMES = frozenset({"password", "passfile", "sslpassword"})
_QUERY_PARAM = re.compile(r"[?&;]([^=&;#]*)=([^&;]*)")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_MASK = "***"
#: Secrets shorter than this are masked inside the URL but not searched for in other text
#: (a driver's message): replacing every "ab" in a message would garble it. Such passwords
#: only reach a driver from a well-formed URL (see ``check_url``), which drivers don't echo.
_SHORTEST_SEARCHED = 4


def _secret_query_spans(target: str, start: int) -> list[tuple[int, int]]:
    """Where the values of ``target``'s secret query parameters are, searching from ``start``."""
    return [
        m.span(2)
        for m in _QUERY_PARAM.finditer(target, start)
        if unquote_plus(m.group(1)).strip().lower() in _SECRET_NAMES
    ]


def _secret_spans(target: str) -> list[tuple[int, int]]:
    """Where the secrets of ``target`` are, as ``(start, end)`` offsets, sorted and merged.

    The user-info password runs from the first ``:`` after ``scheme://`` to the last ``@``:
    wider than what a URL parser calls the password whenever an unescaped ``#``, ``?``, ``/``
    or ``@`` in it makes parsers split the URL elsewhere, and never narrower. A ``:`` of
    ``host:port`` followed by an ``@`` in the query is masked too: too much rather than too
    little.
    """
    match = _SCHEME.match(target)
    if match is None or len(match.group(1)) == 1:
        return []
    start = match.end()
    spans = []
    colon, at = target.find(":", start), target.rfind("@", start)
    if colon != -1 and colon < at:
        spans.append((colon + 1, at))
    spans += _secret_query_spans(target, start - 1)
    merged: list[tuple[int, int]] = []
    for begin, end in sorted(s for s in spans if s[1] > s[0]):
        if merged and begin <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((begin, end))
    return merged


def _searched_forms(secret: str) -> set[str]:
    """The secret as drivers may echo it: as written, %-decoded, and each piece between the
    characters that split an unescaped password (a parser may take one piece as the port)."""
    forms = {secret, unquote(secret), unquote_plus(secret)}
    for piece in re.split(r"[#?/@&;:]", secret):
        forms |= {piece, unquote(piece)}
    return {form for form in forms if len(form) >= _SHORTEST_SEARCHED}


def redact(text: str, target: str) -> str:
    """``text`` with every secret of the URL ``target`` masked as ``***``.

    The one place secrets are taken out of what persistdict shows: ``target`` itself
    (``redact(url, url)`` is the URL to display), messages of drivers that echo part of
    the URL, and whole error chains (``redact_exception``). Secrets are the user-info
    password (even when unescaped ``#``, ``?``, ``/``, ``@`` or a bad ``%``-escape split the
    URL oddly) and the values of the ``password``, ``passfile`` and ``sslpassword`` query
    parameters. Text without them, and any ``target`` that is a path, is returned unchanged.
    """
    spans = _secret_spans(target)
    if not spans:
        return text
    shown, last = [], 0
    for begin, end in spans:
        shown += [target[last:begin], _MASK]
        last = end
    text = text.replace(target, "".join(shown) + target[last:])
    forms = set().union(*(_searched_forms(target[begin:end]) for begin, end in spans))
    for form in sorted(forms, key=len, reverse=True):  # longest first: no half-masked secret
        text = text.replace(form, _MASK)
    return text


def mask_password(url: str) -> str:
    """``redis://user:secret@host`` -> ``redis://user:***@host``; other text is unchanged.
    The URL as persistdict shows it: ``redact`` of the URL itself."""
    return redact(url, url)


def _redact_value(value: Any, target: str) -> Any:
    if isinstance(value, str):
        return redact(value, target)
    if isinstance(value, (tuple, list)):
        return type(value)(_redact_value(v, target) for v in value)
    return value


def redact_exception(exc: BaseException, target: str) -> BaseException:
    """Mask the secrets of ``target`` in ``exc`` and every exception chained to it (its
    ``__cause__`` and ``__context__``, all the way down), in place; return ``exc``.

    Driver errors are kept as causes, so ``raise ... from exc`` and tracebacks stay useful,
    but their messages may echo the URL: their ``args``, ``OSError``'s ``strerror`` and file
    names, and ``__notes__`` are rewritten through ``redact``.
    """
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        args = _redact_value(current.args, target)
        if args != current.args:
            current.args = args
        if isinstance(current, OSError):
            # Set only what holds text: OSError's str() reads a None set here as given.
            for name in ("strerror", "filename", "filename2"):
                value = getattr(current, name)
                if isinstance(value, str):
                    setattr(current, name, redact(value, target))
        notes = getattr(current, "__notes__", None)
        if isinstance(notes, list):
            notes[:] = _redact_value(notes, target)
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]
    return exc


@contextmanager
def redacted_errors(target: str) -> Iterator[None]:
    """Whatever is raised inside leaves with ``redact_exception`` applied for ``target``."""
    try:
        yield
    except BaseException as exc:
        redact_exception(exc, target)
        raise


@contextmanager
def driver_errors(url: str, translated: AbstractContextManager[None]) -> Iterator[None]:
    """Driver errors as persistdict's, with the URL's secrets masked in the whole chain:
    driver messages echo parts of the URL, and the driver's error is kept as the cause.

    ``translated`` is the network backend's own translation of its driver's errors.
    """
    with redacted_errors(url), translated:
        yield


@contextmanager
def redacted_logs(target: str, logger: str) -> Iterator[None]:
    """Mask ``target``'s secrets in what the logger named ``logger`` (a driver's) records
    meanwhile: libpq's host lookups are logged with the host text, which is a piece of the
    password when it split the URL."""
    import logging  # here, not at import: only drivers need it, and they import it anyway

    def mask(record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message, target)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            redact_exception(record.exc_info[1], target)
        return True

    log = logging.getLogger(logger)
    log.addFilter(mask)
    try:
        yield
    finally:
        log.removeFilter(mask)


def check_url(url: str) -> None:
    """Refuse a URL whose secrets would reach a driver mangled: a ``#``, ``?``, ``/`` or
    ``@`` left unescaped in the user name or password makes URL parsers split it elsewhere
    (the password's pieces become the port, the path, the host) and a bad ``%``-escape makes
    libpq echo the token. ``ValueError`` naming the URL (masked) and what to do."""
    scheme, rest = split_scheme(url)
    if scheme is None:
        return
    problem = None
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    userinfo = authority.rpartition("@")[0]
    if "@" in rest[len(authority) :]:
        problem = (
            "an '@' comes after the host: an unescaped '#', '?' or '/' in the password ended "
            "the host early, or a query value holds an '@'"
        )
    elif "@" in userinfo:
        problem = "the user name or password holds an '@'"
    secrets = [userinfo, *(url[begin:end] for begin, end in _secret_query_spans(url, 0))]
    if problem is None and any(_BAD_ESCAPE.search(secret) for secret in secrets):
        problem = "the user name or password holds a '%' that is not a %-escape such as %40"
    elif problem is None and not all(_decodes(secret) for secret in secrets):
        # psycopg raises a bare UnicodeDecodeError whose args hold the password's bytes.
        problem = "the user name or password holds %-escapes whose bytes are not UTF-8"
    if problem is not None:
        raise ValueError(
            f"{mask_password(url)}: the URL can't be read as written: {problem}. "
            "Percent-encode these characters in the user name, password and query values: "
            "'#' as %23, '?' as %3F, '/' as %2F, '@' as %40, '%' as %25"
        )


def _decodes(text: str) -> bool:
    try:
        unquote(text, errors="strict")
    except UnicodeDecodeError:
        return False
    return True


def parse_bool(text: str) -> bool:
    """Query-string truth: ``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off``."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, not {text!r}")


def url_options(
    url: str, kwargs: Mapping[str, Any], converters: Mapping[str, Callable[[str], Any]]
) -> dict[str, Any]:
    """Merge the options of ``url``'s query string with keyword arguments of the same names.

    ``converters`` maps each accepted name to a function that turns the query text into its
    value (``int``, ``float``, ``parse_bool``...); keyword values are taken as they are.
    Keyword arguments left at ``None`` count as not given. An unknown name, a value that
    doesn't convert, or a name given both ways with different values is a ``ValueError``
    naming the URL (password masked).
    """
    shown = mask_password(url)
    merged: dict[str, Any] = {k: v for k, v in kwargs.items() if v is not None}
    query = urlsplit(url).query
    for name, text in parse_qsl(query, keep_blank_values=True):
        convert = converters.get(name)
        if convert is None:
            raise ValueError(
                f"{shown}: unknown option {name!r} in the query string; "
                f"accepted: {', '.join(sorted(converters))}"
            )
        try:
            value = convert(text)
        except ValueError as exc:
            raise ValueError(f"{shown}: option {name}={text!r} is invalid: {exc}") from None
        if name in merged and merged[name] != value:
            raise ValueError(
                f"{shown}: option {name!r} is given twice, as {value!r} in the URL and as "
                f"{merged[name]!r} in the keyword arguments; give it once"
            )
        merged[name] = value
    return merged
