"""A TCP proxy on 127.0.0.1 in front of a test server, which drops connections on demand.

Tests point a client at the proxy and then ask it to cut the connection at step *k* of an
operation, either losing the request (the server never sees it) or losing the reply (the
server ran the command; the client never hears back). A step is one request: the bytes a
client sends before it waits for an answer. The proxy counts steps from the moment it is
armed, over every connection, so a test can walk k = 1, 2, ... until an operation completes
without reaching step k: then every step has been cut once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

#: What a cut loses: the request (the proxy drops it), the reply (the server ran the request),
#: or the session: the server is told to end it (CLIENT KILL, pg_terminate_backend) by
#: ``killer(port)``, where port is the proxy's end of that connection, before the request.
Lose = Literal["request", "reply", "kill"]
_READ = 1 << 16


@dataclass(eq=False)
class _Connection:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    new_step: bool = True  # the next client bytes start a new request
    drop_reply: bool = False


class Proxy:
    """Forward 127.0.0.1:``port`` to ``host``:``target_port``; see the module docstring."""

    def __init__(self, host: str, target_port: int) -> None:
        self.host, self.target_port = host, target_port
        self.steps = 0  # requests seen since the last arm()
        self.cut = False  # whether the armed cut happened
        self._cut_at = 0
        self._lose: Lose = "reply"
        self.killer: Callable[[int], None] | None = None
        self._connections: set[_Connection] = set()
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the proxy did not start")

    @classmethod
    def in_front_of(cls, url: str) -> Proxy:
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or _default_port(parts.scheme))

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by the proxy's."""
        parts = urlsplit(url)
        user = parts.netloc.rpartition("@")[0]
        netloc = f"{user}@127.0.0.1:{self.port}" if user else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def arm(self, step: int, lose: Lose) -> None:
        """Count requests from now on, and drop the connection carrying request ``step``."""
        self.steps, self.cut, self._cut_at, self._lose = 0, False, step, lose

    def disarm(self) -> None:
        self._cut_at = 0

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # The event loop's side.

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port: int = server.sockets[0].getsockname()[1]
        ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            for conn in list(self._connections):
                self._drop(conn)
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.close()
            return
        conn = _Connection(writer, up_writer)
        self._connections.add(conn)
        await asyncio.gather(self._requests(reader, conn), self._replies(up_reader, conn))
        self._connections.discard(conn)

    async def _requests(self, reader: asyncio.StreamReader, conn: _Connection) -> None:
        while data := await _read(reader):
            if conn.new_step:
                conn.new_step = False
                self.steps += 1
                if self._cut_at and self.steps == self._cut_at:
                    self.cut = True
                    if self._lose == "request":
                        self._drop(conn)
                        return
                    if self._lose == "kill":
                        assert self.killer is not None, "set proxy.killer to cut with a kill"
                        self.killer(conn.server.get_extra_info("sockname")[1])
                    else:
                        conn.drop_reply = True
            conn.server.write(data)
            with contextlib.suppress(OSError):
                await conn.server.drain()
        self._drop(conn)

    async def _replies(self, reader: asyncio.StreamReader, conn: _Connection) -> None:
        while data := await _read(reader):
            if conn.drop_reply:
                self._drop(conn)  # the server answered: the request ran; the answer is lost
                return
            conn.new_step = True
            conn.client.write(data)
            with contextlib.suppress(OSError):
                await conn.client.drain()
        self._drop(conn)

    @staticmethod
    def _drop(conn: _Connection) -> None:
        for writer in (conn.client, conn.server):
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()


async def _read(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.read(_READ)
    except (OSError, asyncio.IncompleteReadError):
        return b""


def _default_port(scheme: str) -> int:
    return 6379 if scheme.startswith("redis") else 5432
