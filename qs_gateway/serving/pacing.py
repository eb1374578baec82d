"""How long a request body may keep a worker thread waiting, and how many may wait at once.

A thread reads a body through :class:`PacedUnreader`: what has arrived is taken at once; when
it has to wait (beyond a moment: clients write headers and body apart), the request needs one of
the worker's *waiting places* (``threads - reserved_threads``; none free: 503) and a deadline:
``body_timeout`` at a time, and in all ``body_timeout`` plus one second for every
``body_min_rate`` bytes received (too late: 408). So requests that have arrived whole always
find a thread, and a body trickling in a byte a second costs a thread for ``body_timeout``
seconds, not for its length in seconds.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gunicorn.http.unreader import SocketUnreader

from ..exceptions import ClientTooSlow, ServiceUnavailable

BODY_WAITERS_BUSY = "Too many requests are still sending their bodies; retry later"
# What is read of a body the application did not want before the connection is given up instead.
DRAIN_LIMIT = 1024 * 1024
# Seconds a request may wait for its body before it needs a waiting place.
PLACE_GRACE = 0.2


@dataclass(frozen=True)
class BodyPace:
    timeout: float  # seconds of waiting at a time, and the base of the whole deadline
    min_rate: int  # bytes per second that extend the deadline


class WaitingPlaces:
    """How many threads of a worker may wait for request bodies at once."""

    def __init__(self, places: int) -> None:
        self.places = places
        self._taken = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._taken >= self.places:
                return False
            self._taken += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self._taken -= 1


class _WouldWait(Exception):
    """Raised instead of waiting while the body is drained without waiting."""


class PacedUnreader(SocketUnreader):
    """gunicorn's socket reader for one connection, waiting only within the body's pace."""

    def __init__(self, sock: socket.socket, pace: BodyPace, places: WaitingPlaces) -> None:
        super().__init__(sock)
        self.pace = pace
        self.places = places
        self.begin()

    def begin(self) -> None:
        """A new request on the connection: its body's clock starts now."""
        self.started = time.monotonic()
        self.received = 0
        self.holds_place = False
        self.waited_without_place = 0.0
        self.no_waiting = False

    def end(self) -> None:
        if self.holds_place:
            self.holds_place = False
            self.places.give_back()

    def chunk(self, size_hint: int | None = None) -> bytes:
        size = self.mxchunk
        if size_hint and size_hint > size:
            size = min(size_hint, self.max_body_chunk)
        while True:
            try:
                data = self.sock.recv(size, socket.MSG_DONTWAIT)
            except BlockingIOError:
                self._wait()
                continue
            self.received += len(data)
            return data

    def _wait(self) -> None:
        if self.no_waiting:
            raise _WouldWait()
        pace = self.pace
        deadline = self.started + pace.timeout + self.received / pace.min_rate
        remaining = min(pace.timeout, deadline - time.monotonic())
        if remaining <= 0:
            raise ClientTooSlow()
        if not self.holds_place:
            # A client that sends its headers and its body in two writes is not slow: the body is
            # waited for without a place for a moment (once per request).
            grace = min(PLACE_GRACE - self.waited_without_place, remaining)
            if grace > 0:
                began = time.monotonic()
                arrived = _readable(self.sock, grace)
                self.waited_without_place += time.monotonic() - began
                if arrived:
                    return
                remaining -= grace
            if not self.places.take():
                raise ServiceUnavailable(BODY_WAITERS_BUSY)
            self.holds_place = True
        if remaining <= 0 or not _readable(self.sock, remaining):
            raise ClientTooSlow()

    def drain(self, body: Any) -> bool:
        """Read the rest of ``body`` as far as it has arrived (at most DRAIN_LIMIT bytes);
        whether that was all of it."""
        self.no_waiting = True
        try:
            drained = 0
            while drained <= DRAIN_LIMIT:
                data = body.read(65536)
                if not data:
                    return True
                drained += len(data)
            return False
        except Exception:  # _WouldWait, or a malformed chunked body
            return False
        finally:
            self.no_waiting = False

    def finish_without_waiting(self, finish_body: Callable[..., bool]) -> bool:
        """gunicorn's own drain of the previous body (``Parser.finish_body``), without waiting."""
        self.no_waiting = True
        try:
            return bool(finish_body(max_bytes=DRAIN_LIMIT))
        except Exception:
            return False
        finally:
            self.no_waiting = False


def _readable(sock: socket.socket, seconds: float) -> bool:
    poller = select.poll()  # not select(): descriptors may exceed FD_SETSIZE
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(seconds * 1000))


def raw_answer(status: str, detail: str, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A complete HTTP answer that closes the connection, for what is refused before a request
    reaches the application (its headers came too slowly, or were too large)."""
    body = json.dumps({"detail": detail}).encode()
    lines = [
        f"HTTP/1.1 {status}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
