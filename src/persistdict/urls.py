"""Target strings: telling URLs from paths, and masking passwords for display."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

__all__ = ["mask_password", "parse_bool", "split_scheme", "url_options", "url_path"]

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


def mask_password(url: str) -> str:
    """``redis://user:secret@host`` -> ``redis://user:***@host``; other text is unchanged."""
    if split_scheme(url)[0] is None:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


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
