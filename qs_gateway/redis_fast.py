"""A lean Redis connection per thread for the few reads on the hottest path.

``GET /api/status`` asks Redis one MGET per request. redis-py spends more CPU on that than the
rest of the request's own work (connection pool, command packing, response handling), so this
path sends a pre-packed command on a socket owned by the calling thread and parses the answer
with hiredis. Everything else uses redis-py. TLS URLs (``rediss://``) are left to redis-py. With
Sentinels, each new connection goes to the master they name (a dead one's connections fail, and
their replacements find the new master).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
import redis


def pack(*args: str | bytes) -> bytes:
    """A Redis command in the wire protocol."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class FastReader:
    """Reads on the Redis at ``url``, or, if ``locate`` is given, at the address it returns for
    each new connection (the current master, with Sentinels). ``password`` is used if the URL
    has none."""

    def __init__(
        self,
        url: str,
        timeout: float,
        *,
        password: str = "",
        locate: Callable[[], tuple[str, int]] | None = None,
    ) -> None:
        kwargs = redis.ConnectionPool.from_url(url).connection_kwargs
        self.usable = not url.startswith("rediss://")
        self.path = None if locate is not None else kwargs.get("path")
        address = (kwargs.get("host", "localhost"), int(kwargs.get("port", 6379)))
        self.locate = locate or (lambda: address)
        self.timeout = timeout
        self.handshake: list[bytes] = []
        password = kwargs.get("password") or password
        if password:
            username = kwargs.get("username")
            auth = ("AUTH", username, password) if username else ("AUTH", password)
            self.handshake.append(pack(*auth))
        if int(kwargs.get("db") or 0):
            self.handshake.append(pack("SELECT", str(kwargs["db"])))
        self._local = threading.local()

    def _connect(self) -> tuple[socket.socket, hiredis.Reader]:
        if self.path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            sock.connect(self.path)
        else:
            sock = socket.create_connection(self.locate(), timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = hiredis.Reader()
        connection = (sock, reader)
        for command in self.handshake:
            reply = self._exchange(connection, command)
            if isinstance(reply, hiredis.ReplyError):
                sock.close()
                raise redis.AuthenticationError(str(reply))
        self._local.pid = os.getpid()
        return connection

    @staticmethod
    def _exchange(connection: tuple[socket.socket, hiredis.Reader], command: bytes) -> Any:
        sock, reader = connection
        sock.sendall(command)
        while True:
            reply = reader.gets()
            if reply is not False:
                return reply
            data = sock.recv(65536)
            if not data:
                raise redis.ConnectionError("Redis closed the connection")
            reader.feed(data)

    def call(self, command: bytes) -> Any:
        """Send a packed read command, return its reply; connection errors raise redis.ConnectionError.

        A kept connection that turns out dead (Redis restarted, an idle timeout) is replaced and
        the read sent once more; a fresh connection that fails is an error.
        """
        connection = getattr(self._local, "connection", None)
        reused = connection is not None and self._local.pid == os.getpid()
        for attempt in (1, 2):
            if not reused or attempt == 2:
                connection = self._local.connection = self._connect()
            try:
                reply = self._exchange(connection, command)
                break
            except (OSError, redis.ConnectionError) as exc:
                self.drop()
                if reused and attempt == 1 and not isinstance(exc, socket.timeout):
                    continue
                if isinstance(exc, socket.timeout):
                    raise redis.TimeoutError(str(exc)) from exc
                raise redis.ConnectionError(str(exc)) from exc
        if isinstance(reply, hiredis.ReplyError):
            raise redis.ResponseError(str(reply))
        return reply

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        return self.call(pack("MGET", *keys))

    def drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            try:
                connection[0].close()
            except OSError:
                pass
