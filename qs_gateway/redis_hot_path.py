"""One redis-py connection per thread for the few commands on the hottest paths.

``GET /api/status`` asks Redis one MGET per status lease, and every write one increment (see
:mod:`qs_gateway.manager.status_cache`). Through ``redis.Redis`` that costs more
CPU than the rest of a status request's own work (checking a connection out of the pool and back,
packing the command, dispatching the reply), so this path keeps one redis-py ``Connection`` per
thread, made by the client's own pool (so with its TLS, AUTH, database and, with Sentinels,
its way to the current master), and sends a command packed once.

Any error drops the thread's connection; its next call makes a new one. An answer Redis's
protocol does not allow is reported as a connection error: the connection is not trusted again.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Callable
from typing import Any

import redis
from redis.connection import AbstractConnection

Packed = list[bytes]

# KEYS[1] is made to live at least ARGV[1] ms from now (a key that would expire sooner, or not
# at all, is set anew), then KEYS[2..] are read. Set anew rather than extended when it would
# expire sooner, so several gateways with different lengths may mark one key.
MARKED_MGET = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return redis.call('MGET', unpack(KEYS, 2))
"""


class HotPathReader:
    """Reads through connections from ``make_connection`` (the client's pool's factory), one
    per thread, each answer awaited for at most ``timeout`` seconds."""

    def __init__(self, make_connection: Callable[[], AbstractConnection], timeout: float) -> None:
        self.make_connection = make_connection
        self.timeout = timeout
        self._local = threading.local()
        self._packed: dict[tuple[str | int, ...], Packed] = {}

    def _connection(self) -> AbstractConnection:
        """This thread's connection (``self._local.answered`` says whether it answered before)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None and self._local.pid == os.getpid():
            return connection
        # A parent's connection (after fork) is only forgotten: closing it would cut the parent's.
        self._local.connection, self._local.pid, self._local.answered = self.make_connection(), os.getpid(), False
        return self._local.connection

    def drop(self) -> None:
        """Close and forget this thread's connection."""
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None and self._local.pid == os.getpid():
            connection.disconnect()

    def call(self, packed: Packed) -> Any:
        """Send a packed command and return its reply.

        A kept connection that turns out dead (Redis restarted, an idle timeout) is replaced and
        the read sent once more; a new connection that fails is an error.
        """
        for attempt in (1, 2):
            connection = self._connection()
            reused = self._local.answered
            try:
                if not reused:
                    # connect() of the pool's class: with Sentinels, to the master they name
                    # (send_packed_command alone would connect to the default address).
                    connection.connect()
                connection.send_packed_command(packed, check_health=False)
                reply = connection.read_response(timeout=self.timeout)
                self._local.answered = True
                return reply
            except Exception as exc:
                self.drop()
                if isinstance(exc, (redis.ResponseError, redis.TimeoutError)):
                    raise
                if isinstance(exc, redis.ConnectionError):
                    if reused and attempt == 1:
                        continue
                    raise
                # an answer the protocol does not allow (hiredis.ProtocolError), or anything else
                raise redis.ConnectionError(f"Redis's answer could not be read: {exc!r}") from exc
        raise AssertionError("unreachable")

    def mget(self, keys: list[str] | tuple[str, ...], mark: tuple[str, int] | None = None) -> list[bytes | None]:
        """MGET ``keys``. With ``mark`` (a key, milliseconds), first make the key live at least
        that long from now, in the same round trip (:data:`MARKED_MGET`)."""
        if mark is None:
            return self._send(("MGET", *keys))
        return self.script(MARKED_MGET, (mark[0], *keys), (mark[1],))

    def script(self, source: str, keys: tuple[str, ...], args: tuple[str | int, ...] = ()) -> Any:
        """Run the Lua ``source`` by its digest (sent in full once after Redis lost its scripts)."""
        command = (len(keys), *keys, *args)
        try:
            return self._send(("EVALSHA", _digest(source), *command))
        except redis.exceptions.NoScriptError:  # Redis started since it last ran: EVAL caches it
            return self.call(self._connection().pack_command("EVAL", source, *command))

    def _send(self, command: tuple[str | int, ...]) -> Any:
        packed = self._packed.get(command)
        if packed is None:
            if len(self._packed) > 64:
                self._packed.clear()  # the hot path sends the same few commands; anything else is rare
            packed = self._packed[command] = self._connection().pack_command(*command)
        return self.call(packed)


@functools.cache
def _digest(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()
