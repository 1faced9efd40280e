"""Cut a client's connection at every step of one operation, and record what each cut left.

The operations are the same for every server backend: each starts from ``OLD`` and, done
whole, leaves the store as its ``new`` mapping says. A cut may make the call fail, but the
store must then hold ``OLD`` or the whole new state, never a part, and the error must say
what happened.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from persistdict import PersistDict
from tests.servers.proxy import Lose, Proxy

OLD: dict[str, Any] = {"a": 1, "b": 2}
#: Upper bound on the steps of one operation; an operation taking more fails the test.
STEP_LIMIT = 60


def _transaction(d: PersistDict) -> None:
    with d.transaction():
        d["a"] = d["a"] + 10
        del d["b"]
        d["c"] = 3


@dataclass(frozen=True)
class Operation:
    run: Callable[[PersistDict], Any]
    returns: Any
    new: dict[str, Any]


OPERATIONS: dict[str, Operation] = {
    "set": Operation(lambda d: d.__setitem__("a", 10), None, {"a": 10, "b": 2}),
    "del": Operation(lambda d: d.__delitem__("a"), None, {"b": 2}),
    "pop": Operation(lambda d: d.pop("a"), 1, {"b": 2}),
    "popitem": Operation(lambda d: d.popitem(), ("a", 1), {"b": 2}),
    "setdefault": Operation(lambda d: d.setdefault("c", 3), 3, {**OLD, "c": 3}),
    "update": Operation(lambda d: d.update({"a": 10, "c": 3}), None, {"a": 10, "b": 2, "c": 3}),
    "clear": Operation(lambda d: d.clear(), None, {}),
    "transaction": Operation(_transaction, None, {"a": 11, "c": 3}),
}


@dataclass
class Trial:
    step: int
    returned: Any
    error: BaseException | None
    state: dict[str, Any]


def cut_at_every_step(
    proxy: Proxy,
    lose: Lose,
    operation: Operation,
    open_proxied: Callable[[], PersistDict],
    open_direct: Callable[[], PersistDict],
) -> list[Trial]:
    """For k = 1, 2, ...: reset the store to ``OLD``, open it through ``proxy``, cut the
    connection at step k of ``operation`` (losing the request or the reply) and record the
    outcome and what the store holds, read over a connection of its own. Stops after the
    first run that ends before step k."""
    trials = []
    for step in range(1, STEP_LIMIT + 1):
        with open_direct() as direct:
            direct.clear()
            direct.update(OLD)
        d = open_proxied()
        proxy.arm(step, lose)
        returned: Any = None
        error: BaseException | None = None
        try:
            returned = operation.run(d)
        except Exception as exc:
            error = exc
        finally:
            proxy.disarm()
            with contextlib.suppress(Exception):
                d.close()
        with open_direct() as direct:
            state = dict(direct)
        trials.append(Trial(step, returned, error, state))
        if not proxy.cut:
            return trials
    raise AssertionError(f"the operation still ran after {STEP_LIMIT} steps")


def check_whole(trials: list[Trial], operation: Operation, url: str) -> None:
    """Every cut left ``OLD`` or the whole new state; a call that returned did its work and
    answered right; a call that failed raised ConnectionError naming ``url`` and the remedy,
    and one that says nothing was written wrote nothing."""
    assert len(trials) >= 2, "no step was cut"
    for trial in trials:
        where = f"cut at step {trial.step}: {trial}"
        assert trial.state in (OLD, operation.new), where
        if trial.error is None:
            assert trial.state == operation.new, where
            assert trial.returned == operation.returns, where
            continue
        message = str(trial.error)
        assert type(trial.error) is ConnectionError, where
        assert url in message, where
        assert "Check that the server is running" in message, where
        if "nothing was written" in message:
            assert trial.state == OLD, where
