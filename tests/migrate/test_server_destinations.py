"""persistdict.migrate into PostgreSQL or Redis: the copy is one transaction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import persistdict
from persistdict import migrate
from persistdict.migrate import DestinationExistsError, UnstorableValueError
from tests.migrate.sources import DATA, make_shelve


@pytest.mark.parametrize("kind", ["postgres", "redis"])
def test_copy_into_a_server_is_one_transaction(kind: str, tmp_path: Path) -> None:
    from tests.helpers import namespace, server_url

    url = server_url(kind)
    name = namespace(kind, tmp_path)
    place: dict[str, Any] = {"dst_table": name} if kind == "postgres" else {"prefix": name}
    opened: dict[str, Any] = {"table": name} if kind == "postgres" else {"prefix": name}
    src = tmp_path / "state"
    make_shelve(src, {**DATA, "zz unstorable": {1, 2}})

    with pytest.raises(UnstorableValueError, match="key 'zz unstorable'"):
        migrate.copy(src, url, trust_pickle=True, **place)
    with persistdict.open(url, **opened) as d:
        assert len(d) == 0, "a failed copy must leave nothing in the server"

    summary = migrate.copy(src, url, trust_pickle=True, on_error="skip", **place)
    assert summary.skipped == [("'zz unstorable'", summary.skipped[0][1])]
    with persistdict.open(url, **opened) as d:
        assert dict(d.items()) == DATA
    with pytest.raises(DestinationExistsError):
        migrate.copy(src, url, trust_pickle=True, on_error="skip", **place)
