"""transaction() on a backend without native transactions: the undo journal.

The journal wraps only the writes; ``d.backend`` stays the backend the dict was given.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from persistdict import BackendBase, PersistDict
from tests.concurrency.harness import run_in_fork, transaction_in_another_thread


class Plain(BackendBase):
    """Encoded values in a dict; no transactions of its own; a flush() that can be made to
    fail, as a full disk does."""

    name = "plain"

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.flushes = 0
        self.fail_flush = False

    def get(self, key: str) -> Any:
        return self.data[key]

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    def delete(self, key: str) -> None:
        del self.data[key]

    def iter_keys(self) -> Iterator[str]:
        return iter(list(self.data))

    def flush(self) -> None:
        if self.fail_flush:
            raise OSError(28, "No space left on device")
        self.flushes += 1


def test_the_dict_keeps_its_own_backend_object() -> None:
    backend = Plain()
    with PersistDict(backend) as d:
        assert d.backend is backend


def test_blocks_nest_an_inner_one_rolls_back_alone_the_outer_one_flushes_once() -> None:
    backend = Plain()
    with PersistDict(backend) as d:
        d.update(a=1, b=2)
        before = backend.flushes
        with d.transaction():
            d["a"] = 10
            with pytest.raises(KeyError), d.transaction():
                d["b"] = 20
                del d["a"]
                d["c"] = 30
                d.clear()
                raise KeyError("inner")
            assert dict(d) == {"a": 10, "b": 2}
            assert backend.flushes == before  # not before the outermost block ends
        assert backend.flushes == before + 1
        with pytest.raises(RuntimeError), d.transaction():
            d.update(a=0, z=0)
            d.pop("b")
            raise RuntimeError("outer")
        assert dict(d) == {"a": 10, "b": 2}


def test_a_failed_save_at_the_end_keeps_the_writes_and_the_cache_in_step() -> None:
    backend = Plain()
    with PersistDict(backend, writeback=True) as d:
        d["log"] = ["old"]
        d.flush()
        held = d["log"]
        backend.fail_flush = True
        with pytest.raises(OSError, match="No space"), d.transaction():
            d["log"] = ["new"]
        # The writes are in the backend, to be saved by a later flush(), and the dict
        # answers what is stored, not the object the block replaced.
        assert d["log"] == ["new"] != held
        backend.fail_flush = False
        d.flush()
        assert backend.data["log"] == '["new"]'


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_block_a_parent_thread_left_open_at_fork_is_forgotten_in_the_child() -> None:
    backend = Plain()
    d = PersistDict(backend)

    def child() -> None:
        # The parent thread's block never ends here: the child's own block is outermost, so
        # it is saved as it ends, and rolls back alone.
        flushes = backend.flushes
        with d.transaction():
            d["child"] = 1
        assert backend.flushes == flushes + 1
        with pytest.raises(KeyError), d.transaction():
            d["child"] = 2
            raise KeyError("undo")
        assert d["child"] == 1

    with transaction_in_another_thread(d, first=lambda: d.update(parent=1)):
        assert run_in_fork(child, timeout=10) == 0
    d.close()
