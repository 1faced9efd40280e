"""What every migration source is: a read-only stream of decoded ``(key, value)`` pairs.

A source yields the pairs in its own order, streaming (one SQLite cursor, one dbm key at a
time). Keys come out as the source holds them: mostly ``str``, but diskcache and sqlitedict
also hold ``int``, ``bytes`` and pickled keys, which
[`persistdict.migrate.copy`][persistdict.migrate.copy] deals with. Nothing a source does
writes: SQLite files are read inside one read transaction by a connection that can't write
(``mode=ro`` or ``query_only``; see ``persistdict.migrate.sqlite_sources.connect_read_only``),
dbm files with flag ``"r"``.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

from persistdict.errors import CorruptError, UntrustedPickleError
from persistdict.serializers import unpickle

__all__ = ["Source", "UntrustedPickleError", "pickle_format", "refusal"]


def refusal(label: str, reason: str) -> str:
    """The message refusing to read pickles: why it matters and how to go ahead."""
    return (
        f"{label} needs unpickling: {reason}. Unpickling runs code chosen by whoever wrote "
        "the data, so it is refused by default. If you trust this source, pass --trust-pickle "
        "(Python: trust_pickle=True)"
    )


def pickle_format(head: bytes) -> bool:
    """Whether bytes start like a pickle of protocol 2 or later (what every library here
    writes: sqlitedict and shelve use the highest or default protocol)."""
    return head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= pickle.HIGHEST_PROTOCOL


class Source:
    """What [`copy`][persistdict.migrate.copy] reads from. Subclasses fill in the hooks."""

    kind = "source"
    #: Reading this source unpickles data, which runs code chosen by whoever wrote it.
    needs_pickle = False
    #: Why it needs pickle, with one key as an example, for the refusal message.
    pickle_reason = ""
    #: Set by ``persistdict.migrate.open_source`` from ``trust_pickle``; checked again
    #: at every unpickle, so a row the up-front refusal missed is refused, not loaded.
    trust_pickle = False
    #: Entries deliberately not copied (diskcache's expired items), counted for the summary.
    left_out = 0
    left_out_reason = ""

    def __init__(self, label: str) -> None:
        self.label = label

    def count(self) -> int | None:
        """How many items there are, if the source can tell cheaply."""
        return None

    def items(self) -> Iterator[tuple[Any, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _unpickle(self, key: Any, data: bytes, where: str = "") -> Any:
        what = f"{self.label}: the value of key {key!r}{where}"
        try:
            return unpickle(data, trusted=self.trust_pickle, what=what)
        except UntrustedPickleError:
            raise
        except Exception as exc:  # a bad or truncated pickle can raise almost anything
            raise CorruptError(
                f"{self.label}: can't unpickle the value of key {key!r}{where} "
                f"({type(exc).__name__}: {exc}); the source may be truncated or need a "
                "module that is not installed"
            ) from exc
