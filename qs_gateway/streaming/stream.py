"""A stream as the fan-out holds it, and what it is served with: encoders, sinks, protocols, grants, admissions."""

from __future__ import annotations

import collections
import socket
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Protocol

Entry = tuple[str, bytes]  # (Redis stream id, JSON data)
Encoder = Callable[[list[Entry]], bytes]  # entries -> bytes on the wire ("" when none is for this kind)


class StreamClosed(Exception):
    """The worker is shutting down (or the stream was closed)."""


class Grant(Protocol):
    """The right to keep reading a stream: checked again while it is open."""

    key: Hashable  # streams with equal keys are checked once for all

    def allowed(self) -> bool: ...


class WireProtocol(Protocol):
    heartbeat: bytes | None

    def received(self, data: bytes) -> tuple[bytes, bool]: ...

    def goodbye(self, code: int, reason: str) -> bytes: ...


class Sink:
    """Where a stream's bytes go when its connection could not be taken (a server other than
    gunicorn, the test client): the request thread takes them, holding its thread meanwhile."""

    def __init__(self, limit: int) -> None:
        self._queue: collections.deque[bytes] = collections.deque()
        self._limit = limit
        self._closed = False
        self._cond = threading.Condition()

    def put(self, data: bytes) -> int:
        """Queue ``data``; the number of older pieces dropped to keep within the limit."""
        with self._cond:
            self._queue.append(data)
            dropped = max(0, len(self._queue) - self._limit)
            for _ in range(dropped):
                self._queue.popleft()
            self._cond.notify()
            return dropped

    def take(self, timeout: float) -> bytes:
        """What arrived, waiting up to ``timeout`` (b"" if nothing did); StreamClosed at the end."""
        with self._cond:
            if not self._queue and not self._closed:
                self._cond.wait(timeout)
            if not self._queue and self._closed:
                raise StreamClosed()
            data = b"".join(self._queue)
            self._queue.clear()
            return data

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


@dataclass(frozen=True)
class Admission:
    """A stream served before its client is admitted (a websocket that must log in with its first
    message): its entries are held, and if no admission comes within ``seconds`` of the hand-over,
    the stream ends with ``code`` and ``reason``."""

    seconds: float
    code: int
    reason: str


@dataclass(eq=False)
class Stream:
    key: str  # the Redis stream it reads
    encode: Encoder = field(repr=False)
    last_id: tuple[int, int]  # the last entry delivered (or the one to resume after)
    on_close: Callable[[], None] | None = field(default=None, repr=False)
    grant: Grant | None = field(default=None, repr=False)
    # From here on, the fan-out thread's own.
    held: list[Entry] | None = field(default_factory=list, repr=False)  # live entries before the backlog
    out: collections.deque = field(default_factory=collections.deque, repr=False)  # bytes not yet written
    sent: int = 0  # bytes of out[0] already written
    dropped: int = 0  # pieces a slow client lost
    connection: socket.socket | None = field(default=None, repr=False)
    sink: Sink | None = field(default=None, repr=False)
    protocol: WireProtocol | None = field(default=None, repr=False)
    since: float = 0.0  # added (not yet attached) / the last bytes written (attached)
    admission: Admission | None = None  # while not None: not admitted yet
    admit_by: float = 0.0  # the end of the wait for admission
    gated: collections.deque | None = field(default=None, repr=False)  # bytes held until admission
    closing_until: float | None = None  # ending: the client has until then to close its side
    write_shut: bool = False
    finished: bool = False
