"""Target strings: telling URLs from paths, and masking passwords for display."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["mask_password", "split_scheme", "url_path"]

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
