"""A hypothesis state machine that drives a backend against a plain ``dict`` model.

Random sequences of every mapping operation, plus ``flush``, ``transaction`` (committed and
failed) and close-and-reopen, run on the backend under test; after every step the dict must
equal the model. Use ``machine_for`` with a conformance class instance::

    TestSqliteStateful = machine_for(TestSqlite()).TestCase
    TestSqliteWriteback = machine_for(TestSqlite(), writeback=True).TestCase

Where values read are the stored ones (snapshot files, or ``writeback=True``), the machine
also changes them in place, and checks that a rolled-back transaction leaves the objects it
read before the block attached to the dict.

hypothesis is imported here, so this module needs the ``test`` extra.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from persistdict.mapping import PersistDict
from persistdict.testing.conformance import MappingConformance

__all__ = ["json_values", "keys", "machine_for"]

_NO_SURROGATES = st.characters(exclude_categories=["Cs"])

#: Keys: short, often colliding, any printable text (lone surrogates excluded: they can't be
#: encoded as UTF-8, which the conformance suite checks separately).
keys = st.one_of(
    st.sampled_from(["a", "b", "c", "", "ключ", "k k"]),
    st.text(alphabet=_NO_SURROGATES, max_size=6),
)

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=_NO_SURROGATES, max_size=10),
)
#: Values that survive a JSON round trip unchanged (lists, str-keyed dicts, no tuples).
json_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=4, alphabet="abcxyz"), inner, max_size=4),
    ),
    max_leaves=8,
)
_text_values = st.text(alphabet=_NO_SURROGATES, max_size=20)


class _RollbackError(Exception):
    """Raised inside a transaction to make it roll back."""


def machine_for(
    suite: MappingConformance, *, writeback: bool = False
) -> type[RuleBasedStateMachine]:
    """Build a state machine class for the backend that ``suite.open_dict`` opens, with
    ``writeback=True`` if asked (per-key backends)."""
    values = _text_values if suite.str_values_only else json_values
    options = {"writeback": True} if writeback else {}
    # Reads hand out the stored objects: changes in place must be kept.
    live = (suite.live_objects or writeback) and not suite.str_values_only
    key_st = keys
    if not suite.nul_in_text:
        no_nul = st.characters(exclude_categories=["Cs"], exclude_characters="\0")
        key_st = keys.filter(lambda k: "\0" not in k)
        values = st.text(alphabet=no_nul, max_size=20)

    class DictMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.folder = Path(tempfile.mkdtemp(prefix="persistdict-stateful-"))
            self.model: dict[str, Any] = {}
            self.d: PersistDict = suite.open_dict(self.folder, flag="n", **options)
            self.changes = 0

        # The model gets copies: an object stored in the dict and changed in place must not
        # change the model with it.

        @rule(key=key_st, value=values)
        def set(self, key: str, value: Any) -> None:
            self.d[key] = value
            self.model[key] = copy.deepcopy(value)

        @rule(key=key_st)
        def get(self, key: str) -> None:
            if key in self.model:
                assert self.d[key] == self.model[key]
            else:
                assert self.d.get(key, "<missing>") == "<missing>"

        @rule(key=key_st)
        def delete(self, key: str) -> None:
            if key in self.model:
                del self.d[key]
                del self.model[key]
            else:
                try:
                    del self.d[key]
                except KeyError:
                    pass
                else:
                    raise AssertionError(f"del of missing key {key!r} did not raise KeyError")

        @rule(key=key_st, value=values)
        def setdefault(self, key: str, value: Any) -> None:
            expected = self.model.setdefault(key, copy.deepcopy(value))
            assert self.d.setdefault(key, value) == expected

        @precondition(lambda self: live and bool(self.model))
        @rule(data=st.data())
        def change_in_place(self, data: st.DataObject) -> None:
            key = data.draw(st.sampled_from(sorted(self.model)))
            self._change(key)

        def _change(self, key: str) -> bool:
            # Change the value read for key in place, as a caller holding it would.
            held = self.d[key]
            self.changes += 1
            if isinstance(held, list):
                held.append(self.changes)
                self.model[key].append(self.changes)
            elif isinstance(held, dict):
                held["changed"] = self.changes
                self.model[key]["changed"] = self.changes
            else:
                return False
            return True

        @rule(key=key_st)
        def pop(self, key: str) -> None:
            assert self.d.pop(key, "<none>") == self.model.pop(key, "<none>")

        @precondition(lambda self: bool(self.model))
        @rule()
        def popitem(self) -> None:
            key, value = self.d.popitem()
            assert self.model.pop(key) == value

        @rule(items=st.dictionaries(key_st, values, max_size=5))
        def update(self, items: dict[str, Any]) -> None:
            self.d.update(items)
            self.model.update(copy.deepcopy(items))

        @rule()
        def clear(self) -> None:
            self.d.clear()
            self.model.clear()

        @rule()
        def flush(self) -> None:
            self.d.flush()

        @rule(items=st.dictionaries(key_st, values, max_size=3), drop=key_st, fail=st.booleans())
        def transaction(self, items: dict[str, Any], drop: str, fail: bool) -> None:
            held = {k: self.d[k] for k in list(self.model)[:3]} if live else {}
            before = copy.deepcopy(self.model)
            try:
                with self.d.transaction():
                    for key in held:  # a change in place, inside the block
                        self._change(key)
                    self.d.update(items)
                    self.d.pop(drop, None)
                    if fail:
                        raise _RollbackError
            except _RollbackError:
                for key, value in held.items():  # still the dict's own objects
                    assert self.d[key] is value, key
                if suite.live_objects:
                    self.model = before  # snapshot files undo changes in place too
                # With writeback a change in place was never stored, so nothing undoes it.
                return
            self.model.update(copy.deepcopy(items))
            self.model.pop(drop, None)

        @precondition(lambda self: suite.persistent)
        @rule(read_only=st.booleans())
        def reopen(self, read_only: bool) -> None:
            self.d.close()
            self.d = suite.open_dict(self.folder, flag="r" if read_only else "w", **options)
            assert dict(self.d) == self.model
            if read_only:
                self.d.close()
                self.d = suite.open_dict(self.folder, flag="w", **options)

        @invariant()
        def matches_model(self) -> None:
            assert len(self.d) == len(self.model)
            assert dict(self.d) == self.model
            assert sorted(self.d.keys()) == sorted(self.model)

        def teardown(self) -> None:
            try:
                self.d.close()
            finally:
                shutil.rmtree(self.folder, ignore_errors=True)

    DictMachine.__name__ = f"{type(suite).__name__}Machine"
    return DictMachine
