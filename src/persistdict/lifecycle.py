"""Open dicts at interpreter exit and across ``os.fork()``; the per-dict lock's type.

Dicts still open are closed, and so saved, at interpreter exit. The registry holds them
weakly: a dict dropped without ``close()`` is closed when collected (``PersistDict.__del__``),
not kept forever with its file descriptors. Only while a dict may hold unsaved writes is it
also held strongly (``hold``), so that they are saved at exit in a known order rather than
whenever it is collected.

Around ``os.fork()``: just before it each dict lets its backend settle; in the child, where
the parent's threads do not exist, each dict drops the state those threads left, and the
registry forgets the parent's dicts, which the child must not save at its own exit.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import weakref
from types import TracebackType
from typing import Protocol

__all__ = [
    "DictLock",
    "NoLock",
    "Registered",
    "held_elsewhere",
    "hold",
    "new_lock",
    "register",
    "release",
    "unregister",
]


class DictLock(Protocol):
    """The lock guarding one dict: a ``threading.RLock``, or ``NoLock`` with ``lock=False``."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool: ...

    def release(self) -> None: ...

    def __enter__(self) -> object: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...


class NoLock:
    """A ``DictLock`` that never waits, for single-threaded code (``lock=False``)."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return True

    def release(self) -> None:
        pass

    def __enter__(self) -> None:
        pass

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None:
        pass


def held_elsewhere(lock: DictLock) -> bool:
    """Whether another thread holds ``lock`` now (re-entrant: not one this thread holds).

    In a forked child, such a thread was the parent's and does not exist here: the lock would
    stay held forever.
    """
    if lock.acquire(blocking=False):
        lock.release()
        return False
    return True


class Registered(Protocol):
    """What the registry asks of an open dict (``PersistDict``)."""

    def _close_at_exit(self) -> None:
        """Close, waiting a bounded time for another thread still using the dict; raise
        with the reason if it can't be saved."""

    def _prepare_fork(self) -> None:
        """Let the backend settle just before ``os.fork()``; never wait, never raise."""

    def _after_fork_in_child(self) -> None:
        """In the child: drop what the parent's other threads left (a held lock, open
        transactions)."""


_open_dicts: weakref.WeakValueDictionary[int, Registered] = weakref.WeakValueDictionary()
_unsaved: dict[int, Registered] = {}
_owner_pid = os.getpid()


def register(d: Registered) -> None:
    """Close ``d`` at interpreter exit if it is still open then (weakly held)."""
    _open_dicts[id(d)] = d


def unregister(d: Registered) -> None:
    """``d`` was closed (and released): forget it."""
    _open_dicts.pop(id(d), None)


def hold(d: Registered) -> None:
    """``d`` may have unsaved writes: keep it alive until ``release`` or interpreter exit, so
    dropping it unclosed does not lose them."""
    _unsaved[id(d)] = d


def release(d: Registered) -> None:
    """``d`` saved everything: it may be collected (and closed) when dropped."""
    _unsaved.pop(id(d), None)


def _close_all_at_exit() -> None:
    if os.getpid() != _owner_pid:
        return
    for d in list(_open_dicts.values()):
        try:
            d._close_at_exit()
        except Exception as exc:
            print(f"persistdict: could not save {d!r} at exit: {exc}", file=sys.stderr)


def _prepare_fork() -> None:
    for d in list(_open_dicts.values()):
        d._prepare_fork()


def _forget_after_fork() -> None:
    global _owner_pid
    # The child inherits the parent's dicts; it must not save them at its own exit.
    for d in list(_open_dicts.values()):
        d._after_fork_in_child()
    _open_dicts.clear()
    _unsaved.clear()
    _owner_pid = os.getpid()


def new_lock(lock: bool) -> DictLock:
    """A fresh lock for one dict: re-entrant, or ``NoLock`` where ``lock`` is false."""
    return threading.RLock() if lock else NoLock()


atexit.register(_close_all_at_exit)
if hasattr(os, "register_at_fork"):  # pragma: no branch - absent only on Windows
    os.register_at_fork(before=_prepare_fork, after_in_child=_forget_after_fork)
