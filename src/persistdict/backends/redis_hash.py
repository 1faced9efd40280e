"""The Redis backend: one Redis hash per dict, shared by processes on many machines.

URLs: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS) and
``unix://[[user]:password@]/path/to/redis.sock?db=N``. Options may be given in the query
string or as keyword arguments, with the same names (see
[`RedisBackend`][persistdict.backends.redis_hash.RedisBackend]).

The dict lives in the hash named ``prefix + table``; fields are the keys (UTF-8), field values
the serializer's output. Nothing else is stored, except short-lived keys beside the hash: a
lock key during ``transaction()``, and markers that expire after a minute (see below).

Durability: with ``commit_every=0`` each write is acknowledged by the server before the call
returns; whether it survives a *server* crash is the server's ``appendonly``/``save``
configuration. With ``commit_every=N`` up to N writes wait in this process and are sent as one
MULTI/EXEC (all or nothing) when the batch is full, on ``flush()`` and on ``close()``; reads
see them meanwhile. If sending fails the writes stay pending and the error is raised, so a
retry after the server is back loses nothing.

Transactions: WATCH and MULTI/EXEC alone would make two clients doing ``d["n"] += 1`` in
``transaction()`` fail each other, and user code can't be replayed after a WatchError. So the
outermost ``transaction()`` first takes a lock key (``SET NX PX``), then WATCHes the hash and
the lock key. Writes in the block are buffered here, and reads consult the buffer before the
server, so the block sees its own writes; the exit sends them with the lock's release in one
MULTI/EXEC. Every write outside a transaction runs as a small Lua script that first checks
the lock, so while a block runs, other persistdict clients' writes wait (up to ``timeout``
seconds, then [`LockedError`][persistdict.LockedError]) instead of breaking it. A read-modify-write
block is therefore exact against other clients. The WATCH catches what the lock can't: a
write by a program that doesn't use persistdict, or the lock expiring after ``lock_ttl``
seconds (that is how a crashed holder's lock frees itself). Then nothing is written and
LockedError says to run the block again.

Lost connections. redis-py sends a command again after the connection drops (``retries``),
and the first one may have run with only its answer lost. Every write is safe to repeat: a
set, update or clear writes the same again; a delete leaves its answer (whether the key was
there) in a marker that a repeat returns, so it doesn't raise KeyError for a key it deleted;
taking the transaction lock finds the lock already ours. The commit of ``transaction()`` is
never repeated: if the connection drops while it is sent, the marker it writes tells whether
the block was written; if it was, the call returns, and if not, ConnectionError says that
nothing was written.

Iteration uses HSCAN, so memory stays flat. As with every Redis SCAN, a key present for the
whole iteration is seen; a key may repeat only if the hash shrinks (another client deleting
many keys) meanwhile.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn, cast
from urllib.parse import unquote, urlsplit

from persistdict.backends.base import (
    BackendBase,
    check_commit_every,
    check_flag,
    check_table_name,
    fork_generation,
    import_driver,
    value_bytes,
)
from persistdict.errors import CorruptError, LockedError, ReadOnlyError, closed_error
from persistdict.locking import DEFAULT_TIMEOUT, check_timeout
from persistdict.urls import check_url, driver_errors, mask_password, url_options

__all__ = ["RedisBackend"]

DEFAULT_LOCK_TTL = 30.0
_SCAN_COUNT = 1000
_CHUNK = 1000  # fields per HSET/HDEL command in a batch
_UNKNOWN: Any = object()  # an overlay lookup that must ask the server
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)
# Every write outside transaction() runs through this script, so it waits while a
# transaction holds the lock instead of breaking it: -1 means "locked, try again". ARGV:
# clear first ("1"/"0"), the number n of fields to delete, those fields, then field/value
# pairs to set. Returns how many fields were deleted. Chunks stay below Lua's unpack limit.
# redis-py sends a command again after a dropped connection, and the first one may have run:
# a call whose answer matters (a delete: KeyError or not) names a reply key KEYS[3], unique
# to the call, where the first run leaves its answer for a repeat to return.
_APPLY = """
if KEYS[3] then
  local done = redis.call('get', KEYS[3])
  if done then return tonumber(done) end
end
if redis.call('exists', KEYS[2]) == 1 then return -1 end
if ARGV[1] == '1' then redis.call('unlink', KEYS[1]) end
local n = tonumber(ARGV[2])
local removed = 0
local i = 3
while i < 3 + n do
  local j = math.min(i + 999, 2 + n)
  removed = removed + redis.call('hdel', KEYS[1], unpack(ARGV, i, j))
  i = j + 1
end
while i <= #ARGV do
  local j = math.min(i + 1999, #ARGV)
  redis.call('hset', KEYS[1], unpack(ARGV, i, j))
  i = j + 1
end
if KEYS[3] then redis.call('set', KEYS[3], removed, 'px', 60000) end
return removed
"""
# set(): _APPLY for one field, without its loops and counts: the same lock check, less to
# send and less Lua to run on each single write. ARGV: the field, its value.
_SET = """
if redis.call('exists', KEYS[2]) == 1 then return -1 end
redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
return 0
"""
# Take the transaction lock, or find it already ours (a repeat after a lost answer); -1 while
# another client holds it. ARGV: this transaction's token, the lock's ttl in ms.
_ACQUIRE = """
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then return 1 end
if holder then return -1 end
redis.call('set', KEYS[1], ARGV[1], 'px', ARGV[2])
return 1
"""
# How long a transaction's "committed" marker and a delete's answer stay: long enough for the
# client to reconnect and read it after losing the connection, short enough to cost nothing.
_MARKER_MS = 60_000
_OPTIONS: dict[str, Callable[[str], Any]] = {
    "db": int,
    "prefix": str,
    "timeout": lambda text: check_timeout(float(text)),
    "lock_ttl": float,
    "socket_timeout": float,
    "socket_connect_timeout": float,
    "retries": int,
    "client_name": str,
    "ssl_ca_certs": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "ssl_cert_reqs": str,
}


def _redis_module() -> Any:
    return import_driver("redis", "redis", "redis")


@dataclass
class _Layer:
    """Writes not yet on the server: a commit_every batch or one level of transaction()."""

    writes: dict[bytes, bytes | None] = field(default_factory=dict)  # None: deleted
    cleared: bool = False


def _merged(layers: list[_Layer]) -> _Layer:
    out = _Layer()
    for layer in layers:
        if layer.cleared:
            out.cleared = True
            out.writes = {}
        out.writes.update(layer.writes)
    return out


def _field(key: str) -> bytes:
    try:
        return key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"can't store key {key!r}: Redis stores keys as UTF-8 ({exc})") from None


class RedisBackend(BackendBase):
    """A dict stored in the Redis hash ``prefix + table`` of the server at ``url``.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL, with optional user, password and
            database number (path ``/N`` or ``?db=N``).
        table: the hash name after ``prefix``, ``[A-Za-z_][A-Za-z0-9_]*``.
        commit_every: 0 sends each write at once; N > 0 sends batches of N (see module doc).
        flag: ``"r"`` refuses writes; ``"n"`` empties the hash; ``"c"``/``"w"`` as is (a
            Redis hash with no fields does not exist, so there is nothing to require).
        prefix: prepended to ``table`` to form the hash name, e.g. ``"myapp:"``.
        db: database number, instead of the URL path.
        timeout: seconds ``transaction()`` waits for another client's transaction.
        lock_ttl: seconds after which a transaction's lock expires (a crashed client's lock
            frees itself); a block running longer fails at its end with LockedError.
        socket_timeout: seconds a command may take, passed to redis-py (default 5).
        socket_connect_timeout: seconds connecting may take, passed to redis-py (default 5).
        retries: reconnect attempts after a dropped connection before an error (default 2).
        client_name: as in redis-py.
        ssl_ca_certs: as in redis-py.
        ssl_certfile: as in redis-py.
        ssl_keyfile: as in redis-py.
        ssl_cert_reqs: as in redis-py.
    """

    name: ClassVar[str] = "redis"
    schemes: ClassVar[tuple[str, ...]] = ("redis", "rediss", "unix")
    native_transactions: ClassVar[bool] = True
    takes_url: ClassVar[bool] = True
    durability: ClassVar[str] = (
        "each write reaches the server before the call returns; what survives a server "
        "crash depends on its persistence settings (appendonly, appendfsync)"
    )

    def __init__(
        self,
        url: str,
        table: str = "items",
        commit_every: int = 0,
        *,
        flag: str = "c",
        prefix: str | None = None,
        db: int | None = None,
        timeout: float | None = None,
        lock_ttl: float | None = None,
        socket_timeout: float | None = None,
        socket_connect_timeout: float | None = None,
        retries: int | None = None,
        client_name: str | None = None,
        ssl_ca_certs: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        ssl_cert_reqs: str | None = None,
    ) -> None:
        self.table = check_table_name(table)
        check_commit_every(commit_every)
        check_flag(flag)
        self.url = url
        self._shown = mask_password(url)
        check_url(url)
        given = dict(locals())
        options = url_options(url, {k: given[k] for k in _OPTIONS}, _OPTIONS)
        self._connect_args = self._client_args(url, options)
        self.prefix = str(options.get("prefix", ""))
        self.hash_name = self.prefix + self.table
        self._key = self.hash_name.encode("utf-8")
        self._lock_key = self._key + b":persistdict-lock"
        self.timeout = check_timeout(options.get("timeout", DEFAULT_TIMEOUT))
        self.lock_ttl = float(options.get("lock_ttl", DEFAULT_LOCK_TTL))
        if not 0 < self.lock_ttl < float("inf"):
            raise ValueError(
                f"{self._shown}: lock_ttl must be a finite number of seconds > 0, "
                f"not {self.lock_ttl!r}"
            )
        self.commit_every = commit_every
        self.read_only = flag == "r"
        self._layers: list[_Layer] = []  # transaction levels, or the commit_every batch
        self._depth = 0
        self._watch: Any = None  # the pipeline holding WATCH during transaction()
        self._token = b""
        self._redis = _redis_module()
        self._client: Any = None
        client = self._connect()
        with self._errors():
            kind = client.type(self._key)
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            if kind not in ("hash", "none"):
                client.close()
                what = (
                    f"{self._shown}: key {self.hash_name!r} holds a Redis {kind}, not a hash; "
                    "it was left untouched. Pass another"
                )
                raise CorruptError(f"{what} table= or prefix=", cli_message=f"{what} --table")
        if flag == "n":
            self._apply(_Layer(cleared=True))  # waits for a transaction in progress

    # Connection management.

    def _client_args(self, url: str, options: dict[str, Any]) -> dict[str, Any]:
        redis = _redis_module()
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        args: dict[str, Any] = {
            "username": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password is not None else None,
            "socket_timeout": options.get("socket_timeout", 5.0),
            "socket_connect_timeout": options.get("socket_connect_timeout", 5.0),
            "client_name": options.get("client_name"),
        }
        # redis-py's default retry policy backs off for seconds; a dropped connection is
        # retried briefly here so a stopped server is reported promptly.
        backoff = redis.backoff.ExponentialBackoff(cap=0.5, base=0.05)
        args["retry"] = redis.retry.Retry(backoff, int(options.get("retries", 2)))
        path_db = parts.path.strip("/")
        if scheme == "unix":
            args["unix_socket_path"] = unquote(parts.path)
            path_db = ""
        else:
            args["host"] = parts.hostname or "localhost"
            args["port"] = parts.port or 6379
        if scheme == "rediss":
            args["ssl"] = True
            for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs"):
                if name in options:
                    args[name] = options[name]
        if path_db and not path_db.isdigit():
            raise ValueError(
                f"{self._shown}: the URL path must be a database number such as /0, not /{path_db}"
            )
        db = options.get("db")
        if db is not None and path_db and int(path_db) != db:
            raise ValueError(f"{self._shown}: database given twice, /{path_db} and db={db}")
        args["db"] = db if db is not None else int(path_db or 0)
        return args

    def _connect(self) -> Any:
        client = self._redis.Redis(**self._connect_args)
        self._release = client.register_script(_RELEASE)
        self._apply_script = client.register_script(_APPLY)
        self._set_script = client.register_script(_SET)
        self._acquire_script = client.register_script(_ACQUIRE)
        self._client = client
        self._generation = fork_generation()
        return client

    @property
    def _r(self) -> Any:
        if self._client is None:
            raise closed_error(self.describe())
        if self._generation != fork_generation():
            # A forked child gets its own connections; writes pending in the parent belong to
            # the parent and are not sent twice from here.
            self._layers = []
            self._depth = 0
            self._watch = None
            self._connect()
        return self._client

    def _errors(self) -> AbstractContextManager[None]:
        return driver_errors(self.url, self._translated())

    def _reraise(self, exc: BaseException) -> NoReturn:
        """Raise ``exc`` as it would leave ``_errors()``. The calls made for every get, `in`,
        len() and plain write catch errors with a bare ``try`` and come here, rather than
        entering ``_errors()``: its three generator context managers cost more than the
        rest of the client's work for a HGET."""
        with self._errors():
            raise exc
        raise AssertionError("unreachable")  # pragma: no cover - _errors() swallows nothing

    @contextmanager
    def _translated(self) -> Iterator[None]:
        redis = self._redis
        try:
            yield
        except redis.exceptions.AuthenticationError as exc:
            # Before ConnectionError, its base class in redis-py: a wrong password is not an
            # unreachable server.
            raise PermissionError(
                f"Redis at {self._shown} refused the login: {str(exc).rstrip('.')}. Check the "
                "URL's user name and password"
            ) from exc
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise ConnectionError(
                f"can't reach Redis at {self._shown}: {str(exc).rstrip('.')}. Check that the "
                "server is running and reachable; pending writes are kept and sent by the next "
                "flush()"
            ) from exc
        except redis.exceptions.ReadOnlyError as exc:  # pragma: no cover - needs a replica
            raise ReadOnlyError(f"Redis at {self._shown} is a read-only replica: {exc}") from exc

    # The overlay of writes not yet sent.

    def _lookup(self, key: bytes) -> Any:
        for layer in reversed(self._layers):
            if key in layer.writes:
                return layer.writes[key]
            if layer.cleared:
                return None
        return _UNKNOWN

    def _buffer(self) -> _Layer | None:
        if self._layers:
            return self._layers[-1]
        if self.commit_every:
            self._layers.append(_Layer())
            return self._layers[-1]
        return None

    def _queue(self, pipe: Any, layer: _Layer) -> None:
        if layer.cleared:
            pipe.unlink(self._key)
        gone = [k for k, v in layer.writes.items() if v is None]
        kept = [(k, v) for k, v in layer.writes.items() if v is not None]
        for i in range(0, len(gone), _CHUNK):
            pipe.hdel(self._key, *gone[i : i + _CHUNK])
        for i in range(0, len(kept), _CHUNK):
            pipe.hset(self._key, mapping=dict(kept[i : i + _CHUNK]))

    def _apply(self, layer: _Layer, *, answer_once: bool = False) -> int:
        """Write ``layer`` at once, all or nothing, after any transaction holding the lock;
        return how many of its deletions removed a field. ``answer_once``: that number must
        stay true when redis-py repeats the call after a lost answer (see ``_APPLY``)."""
        keys = [self._key, self._lock_key]
        if answer_once:
            keys.append(self._key + b":persistdict-reply:" + secrets.token_hex(12).encode())
        gone = [k for k, v in layer.writes.items() if v is None]
        args: list[bytes] = [b"1" if layer.cleared else b"0", str(len(gone)).encode(), *gone]
        if gone:
            args += [part for k, v in layer.writes.items() if v is not None for part in (k, v)]
        else:  # the usual update(): every pair, flattened in C
            sets = cast("dict[bytes, bytes]", layer.writes)  # no None (deletion) among them
            args += itertools.chain.from_iterable(sets.items())
        return int(self._run_script(self._apply_script, keys, args))

    def _run_script(self, script: Any, keys: list[bytes], args: list[bytes]) -> Any:
        """Run ``script`` (made by ``register_script``) once no transaction holds the lock:
        a reply of -1 means one does, and then ``_until_unlocked`` tries again for up to
        ``timeout`` seconds. Errors leave as from ``_errors()``.

        The first attempt is a bare EVALSHA on the script's client, which is what
        ``Script.__call__`` sends without its own Python around it; that, the polling loop
        and ``_errors()`` are only entered when needed (the server lost the script, the
        lock is held, an error), as they cost a fifth of a local round trip per write.
        """
        try:
            try:
                result = script.registered_client.evalsha(script.sha, len(keys), *keys, *args)
            except self._redis.exceptions.NoScriptError:
                result = script(keys=keys, args=args)  # loads it into the server and runs it
            if result == -1:
                result = self._until_unlocked(lambda: script(keys=keys, args=args))
        except BaseException as exc:
            self._reraise(exc)
        return result

    def _until_unlocked(self, attempt: Callable[[], Any]) -> Any:
        # Polls: Redis has no blocking wait on a key's deletion. Bounded by timeout=.
        deadline = time.monotonic() + self.timeout
        pause = 0.001
        while True:
            result = attempt()
            if result is not None and result is not False and result != -1:
                return result
            if time.monotonic() >= deadline:
                raise LockedError(
                    f"{self.describe()}: another client's transaction held the hash for "
                    f"{self.timeout:g}s; retry, or pass a longer timeout="
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _send_batch(self) -> None:
        if self._depth or not self._layers:
            return
        self._apply(self._layers[0])
        self._layers = []

    def _after_write(self) -> None:
        if not self._depth and self._layers and len(self._layers[0].writes) >= self.commit_every:
            self._send_batch()

    # The Backend methods.

    def get(self, key: str) -> Any:
        try:
            k = key.encode("utf-8")
        except UnicodeEncodeError:  # never stored
            raise KeyError(key) from None
        found = self._lookup(k) if self._layers else _UNKNOWN
        if found is _UNKNOWN:
            try:
                found = self._r.hget(self._key, k)
            except BaseException as exc:
                self._reraise(exc)
        if found is None:
            raise KeyError(key)
        return found

    def contains(self, key: str) -> bool:
        try:
            k = key.encode("utf-8")
        except UnicodeEncodeError:
            return False
        found = self._lookup(k) if self._layers else _UNKNOWN
        if found is _UNKNOWN:
            try:
                return bool(self._r.hexists(self._key, k))
            except BaseException as exc:
                self._reraise(exc)
        return found is not None

    def set(self, key: str, value: Any) -> None:
        if self.read_only:
            self.check_writable()
        try:  # inlined _field() and value_bytes(): the calls were a fifth of a batched write
            k = key.encode("utf-8")
            v = value.encode("utf-8") if type(value) is str else value_bytes(key, value)
        except UnicodeEncodeError:
            k, v = _field(key), value_bytes(key, value)  # raises the error naming the key
        layers = self._layers
        if layers:
            writes = layers[-1].writes
            writes[k] = v
            if not self._depth and len(writes) >= self.commit_every:
                self._send_batch()
            return
        if self.commit_every:
            self._layers.append(_Layer({k: v}))
            self._after_write()
            return
        self._run_script(self._set_script, [self._key, self._lock_key], [k, v])

    def delete(self, key: str) -> None:
        self.check_writable()
        try:
            k = key.encode("utf-8")
        except UnicodeEncodeError:
            raise KeyError(key) from None
        layer = self._buffer()
        if layer is None:
            if not self._apply(_Layer({k: None}), answer_once=True):
                raise KeyError(key)
            return
        # del must raise KeyError at once for a missing key, and only the server knows
        # (unless a pending write says): one HEXISTS per delete, the HDEL waiting with the
        # batch. No fewer round trips can answer; sending the HDEL now instead would cost the
        # same and break the batch's all-or-nothing.
        if not self.contains(key):
            raise KeyError(key)
        layer.writes[k] = None
        self._after_write()

    def set_many(self, items: Iterable[tuple[str, Any]]) -> None:
        self.check_writable()
        items = list(items)
        try:  # one pass for the usual batch: keys and values that are text
            encoded = {k.encode(): v.encode() for k, v in items}
        except (AttributeError, UnicodeEncodeError):  # bytes values, or the clear error
            encoded = {_field(k): value_bytes(k, v) for k, v in items}  # refuse bad input first
        if self._depth:
            self._layers[-1].writes.update(encoded)
            return
        # One script call: all of the batch (with any pending commit_every writes) or nothing.
        batch = self._layers[0] if self._layers else _Layer()
        batch.writes.update(encoded)
        self._layers = [batch]
        self._send_batch()

    def clear(self) -> None:
        self.check_writable()
        if self._depth:
            self._layers[-1] = _Layer(cleared=True)
            return
        self._layers = []
        self._apply(_Layer(cleared=True))

    def count(self) -> int:
        if not self._layers:
            try:
                return int(self._r.hlen(self._key))
            except BaseException as exc:
                self._reraise(exc)
        with self._errors():
            view = _merged(self._layers)
            if view.cleared:
                return sum(1 for v in view.writes.values() if v is not None)
            keys = list(view.writes)
            pipe = self._r.pipeline(transaction=False)
            pipe.hlen(self._key)
            for k in keys:
                pipe.hexists(self._key, k)
            total, *present = pipe.execute()
        for k, on_server in zip(keys, present, strict=True):
            pending = view.writes[k] is not None
            total += int(pending) - int(bool(on_server))
        return int(total)

    def _scan_pages(self) -> Iterator[dict[bytes, bytes]]:
        """The hash's fields and values, one HSCAN reply at a time (errors translated once
        per reply, not per field: that cost more than decoding the field)."""
        cursor = 0
        while True:
            with self._errors():
                cursor, page = self._r.hscan(self._key, cursor, count=_SCAN_COUNT)
            yield page
            if not cursor:
                return

    def iter_items(self) -> Iterator[tuple[str, Any]]:
        view = _merged(self._layers) if self._layers else None
        if view is None or not view.cleared:
            for page in self._scan_pages():
                if view is None:
                    yield from zip(map(bytes.decode, page), page.values(), strict=True)
                    continue
                for k, v in page.items():
                    if k not in view.writes:  # else the pending version is yielded below
                        yield k.decode("utf-8"), v
        if view is not None:
            for k, pending in view.writes.items():
                if pending is not None:
                    yield k.decode("utf-8"), pending

    def iter_keys(self) -> Iterator[str]:
        if self._layers:
            for key, _ in self.iter_items():
                yield key
            return
        for page in self._scan_pages():
            yield from map(bytes.decode, page)

    # Transactions.

    def _acquire(self) -> None:
        token = secrets.token_hex(16).encode()
        ttl_ms = max(1, int(self.lock_ttl * 1000))
        with self._errors():
            self._token = token
            try:
                self._until_unlocked(
                    lambda: self._acquire_script(keys=[self._lock_key], args=[token, ttl_ms])
                )
                self._watch = self._r.pipeline(transaction=True)
                self._watch.watch(self._key, self._lock_key)
            except BaseException:
                # Also when the lock's answer was lost: it may be ours, and must not wait
                # for lock_ttl. Freeing it is best effort; the original error is the news.
                with contextlib.suppress(self._redis.exceptions.RedisError):
                    self._end_outermost()
                raise

    def _end_outermost(self) -> None:
        watch, self._watch = self._watch, None
        try:
            if watch is not None:
                watch.reset()  # UNWATCH and give the connection back
        finally:
            self._release(keys=[self._lock_key], args=[self._token])

    def _commit_outermost(self, layer: _Layer) -> None:
        redis = self._redis
        if not layer.cleared and not layer.writes:
            with self._errors():
                self._end_outermost()
            return
        lost = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        committed = self._lock_key + b":committed:" + self._token
        with self._errors():
            try:
                self._watch.multi()
                self._queue(self._watch, layer)
                self._watch.delete(self._lock_key)
                self._watch.set(committed, b"1", px=_MARKER_MS)
                self._watch.execute()
            except (redis.exceptions.WatchError, *lost) as exc:
                # redis-py turns a connection lost while WATCHing into a WatchError.
                if isinstance(exc, lost) or isinstance(exc.__context__, lost):
                    self._after_lost_commit(committed, exc)
                    return
                self._end_outermost()
                raise LockedError(
                    f"{self.describe()}: a client not using persistdict wrote to the hash "
                    f"during the transaction, or it ran past lock_ttl={self.lock_ttl:g}s; "
                    "nothing was written. Run the block again"
                ) from exc
            self._watch.reset()
            self._watch = None

    def _after_lost_commit(self, committed: bytes, exc: BaseException) -> None:
        """The connection dropped while EXEC was sent: the marker EXEC writes says whether
        the block was written. Return if it was; else free the lock and say so."""
        lost = (self._redis.exceptions.ConnectionError, self._redis.exceptions.TimeoutError)
        watch, self._watch = self._watch, None
        with contextlib.suppress(*lost):
            watch.reset()  # its connection is gone, and with it the WATCH: give it back
        try:
            written = bool(self._r.exists(committed))
            if not written:
                self._release(keys=[self._lock_key], args=[self._token])
        except lost as again:
            raise ConnectionError(
                f"lost the connection to Redis at {self._shown} while committing a "
                f"transaction() ({again}), and it can't be reached to learn whether the block "
                "was written: it was written whole or not at all. Check that the server is "
                "running, then look at the data before running the block again"
            ) from exc
        if not written:
            raise ConnectionError(
                f"lost the connection to Redis at {self._shown} while committing a "
                f"transaction() ({exc}); nothing was written. Check that the server is "
                "running and run the block again"
            ) from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.check_writable()
        if self._depth == 0:
            self._send_batch()
            self._acquire()
        self._depth += 1
        self._layers.append(_Layer())
        try:
            yield
        except BaseException:
            self._depth -= 1
            self._layers.pop()
            if self._depth == 0:
                with self._errors():
                    self._end_outermost()
            raise
        self._depth -= 1
        layer = self._layers.pop()
        if self._depth:
            parent = self._layers[-1]
            if layer.cleared:
                parent.cleared, parent.writes = True, layer.writes
            else:
                parent.writes.update(layer.writes)
            return
        self._commit_outermost(layer)

    # Lifecycle.

    def flush(self) -> None:
        if self._client is not None:
            self._send_batch()

    def close(self) -> None:
        client = self._client
        if client is None:
            return
        if self._generation == fork_generation():
            self._send_batch()  # if this fails the dict stays open with its pending writes
            client.close()
        self._client = None

    def describe(self) -> str:
        ro = " read-only" if self.read_only else ""
        return f"redis {self._shown} hash {self.hash_name!r}{ro}"
