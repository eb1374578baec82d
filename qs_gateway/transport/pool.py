"""A thread-safe pool of ZeroMQ REQ sockets connected to one REP peer (RE Manager).

Rules this module keeps:

* ZeroMQ sockets are not thread-safe, so a socket is checked out by one thread for one request
  and checked back in afterwards; the pool's lock is the memory barrier between threads.
* A REQ socket must alternate send and receive. A socket whose request timed out or failed is
  stuck, so it is closed (LINGER 0) and replaced by a new one, never put back.
* One ``zmq.Context`` per process, created lazily and re-created after ``fork()``: nothing is
  created at import time.
* A request is sent at most once unless the caller says it may be repeated (reads). A read is
  retried once, on a fresh socket, only when the first attempt could not deliver the message.
* While the breaker is open because nothing reached RE Manager, a request goes on a new socket
  whose connection is watched (a ZeroMQ socket monitor): refused, the request fails at once;
  accepted, it is sent (see :mod:`.breaker`).

The pool knows nothing about HTTP, Flask or RE Manager's methods.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from .breaker import CircuitBreaker, CircuitOpen
from .codec import Codec
from .curve import ClientCurveKeys

logger = logging.getLogger(__name__)

__all__ = ["CircuitOpen", "PoolExhausted", "ProtocolError", "RequestTimeout", "SocketPool", "Timeouts"]


class RequestTimeout(Exception):
    """The peer did not take or answer the request in time. ``delivered`` tells which."""

    def __init__(self, delivered: bool) -> None:
        self.delivered = delivered
        super().__init__("timeout occurred")


class PoolExhausted(Exception):
    """Every socket stayed busy past the checkout deadline."""

    def __init__(self, waited: float, retry_after: float = 1.0) -> None:
        self.waited = waited
        self.retry_after = retry_after
        super().__init__(f"all RE Manager connections stayed busy for {waited:.1f} s")


class Unreachable(Exception):
    """A new connection to the peer was refused (``refused``), or got no answer in time."""

    def __init__(self, refused: bool) -> None:
        self.refused = refused
        super().__init__("connection refused" if refused else "no answer to a connection attempt")


# What a socket monitor reports of a connection attempt: accepted, or not (a refused TCP
# connection is retried later, a failed handshake is a wrong CURVE key, say).
_VERDICTS = {
    zmq.EVENT_HANDSHAKE_SUCCEEDED: True,
    zmq.EVENT_CONNECT_RETRIED: False,
    zmq.EVENT_CLOSED: False,
    zmq.EVENT_DISCONNECTED: False,
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: False,
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: False,
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: False,
}


def _first_verdict(monitor: zmq.Socket, seconds: float) -> bool | None:
    """Whether the watched connection was accepted; None if nothing was decided in time."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if not monitor.poll(_ms(left)):
            return None
        verdict = _VERDICTS.get(recv_monitor_message(monitor)["event"])
        if verdict is not None:
            return verdict
    return None


class ProtocolError(Exception):
    """The peer answered with a frame that could not be decoded."""


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed to hand the message to the peer and to receive its reply."""

    send: float = 0.5
    receive: float = 2.0


# Every context a pool made, until the pool is closed. A pool that is dropped without close()
# (a forgotten application in a test, a parent's pool after fork) keeps its context alive
# instead of letting the garbage collector finalize it: collected in one cycle with its sockets
# (an application whose WSGI middleware refers back to it is such a cycle), the context may be
# finalized first, and its term() then waits forever for sockets that are not closed yet.
_OPEN_CONTEXTS: set[zmq.Context] = set()


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)


class SocketPool:
    def __init__(
        self,
        address: str,
        *,
        size: int = 4,
        checkout_timeout: float = 1.0,
        codec: Codec | None = None,
        server_public_key: str | None = None,
        breaker: CircuitBreaker,
    ) -> None:
        if size < 1:
            raise ValueError("pool size must be at least 1")
        self.address = address
        self.size = size
        self.checkout_timeout = checkout_timeout
        self.codec = codec or Codec("json")
        self.server_public_key = server_public_key or None
        self.breaker = breaker
        self._cond = threading.Condition(threading.Lock())
        self._idle: collections.deque[zmq.Socket] = collections.deque()
        self._open_count = 0
        self._pid: int | None = None
        self._context: zmq.Context | None = None
        self._curve: ClientCurveKeys | None = None
        self._closed = False
        self._timeouts = 0

    # -- introspection (metrics, readiness) -------------------------------------------------

    @property
    def sockets_open(self) -> int:
        return self._open_count

    @property
    def sockets_in_use(self) -> int:
        return self._open_count - len(self._idle)

    @property
    def timeouts(self) -> int:
        """Requests the peer did not take or answer in time, since this pool was made."""
        return self._timeouts

    # -- lifecycle ---------------------------------------------------------------------------

    def _ensure_process_state(self) -> None:
        """Create the context on first use in this process; forget a parent's after fork."""
        pid = os.getpid()
        if self._pid == pid:
            return
        with self._cond:
            if self._pid == pid:
                return
            if self._pid is not None:
                # Inherited from the parent: its sockets and context must not be touched here.
                self._idle.clear()
                self._open_count = 0
            self._context = zmq.Context()
            _OPEN_CONTEXTS.add(self._context)
            if self.server_public_key:
                self._curve = ClientCurveKeys.generate(self.server_public_key)
            self._closed = False
            self._pid = pid

    def open(self) -> None:
        """Create the per-process context now (gunicorn's ``post_worker_init``)."""
        self._ensure_process_state()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            while self._idle:
                self._idle.pop().close(linger=0)
            self._open_count = 0
            context, self._context, self._pid = self._context, None, None
            self._cond.notify_all()
        if context is not None:
            _OPEN_CONTEXTS.discard(context)
            # At worker exit no request is in flight any more; destroy() closes whatever a
            # crashed thread may have left checked out instead of blocking in term().
            context.destroy(linger=0)

    # -- sockets -----------------------------------------------------------------------------

    def _new_socket(self, watch: float | None = None) -> zmq.Socket:
        """A socket connected to the peer; with ``watch``, only once the peer accepted its
        connection within that many seconds (else it is closed, and :class:`Unreachable` raised)."""
        sock = self._context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        # Do not queue messages for a peer that is not connected: a send then fails at once,
        # and a failed send is known not to have reached RE Manager.
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        # Heartbeats notice a peer host that vanished without closing the TCP connection.
        sock.setsockopt(zmq.HEARTBEAT_IVL, 1000)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3000)
        if self._curve is not None:
            self._curve.apply(sock)
        if watch is None:
            sock.connect(self.address)
            return sock
        monitor = sock.get_monitor_socket(zmq.EVENT_ALL)
        try:
            sock.connect(self.address)
            accepted = _first_verdict(monitor, watch)
        finally:
            sock.disable_monitor()
            monitor.close(linger=0)
        if accepted:
            return sock
        sock.close(linger=0)
        raise Unreachable(refused=accepted is False)

    def _checkout(self, request_deadline: float) -> zmq.Socket:
        self._ensure_process_state()
        started = time.monotonic()
        deadline = min(started + self.checkout_timeout, request_deadline)
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("the socket pool is closed")
                if self._idle:
                    return self._idle.pop()
                if self._open_count < self.size:
                    self._open_count += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PoolExhausted(time.monotonic() - started)
                self._cond.wait(remaining)
        try:
            return self._new_socket()
        except BaseException:
            with self._cond:
                self._open_count -= 1
                self._cond.notify()
            raise

    def _reconnected(self, sock: zmq.Socket, within: float) -> zmq.Socket:
        """In the slot of ``sock``, a new socket that the peer accepted; else :class:`CircuitOpen`,
        at once if the peer refused (after ``within`` seconds if it did not answer)."""
        sock.close(linger=0)  # it retries its connection on a timer; a new socket tries at once
        try:
            return self._new_socket(watch=within)
        except BaseException as exc:
            self._release_slot()
            if not isinstance(exc, Unreachable):
                raise
            if not exc.refused:
                self.breaker.record_failure()  # silence: it took a whole timeout to learn
            raise self.breaker.unreachable(refused=exc.refused) from exc

    def _checkin(self, sock: zmq.Socket) -> None:
        with self._cond:
            if self._closed or os.getpid() != self._pid:
                sock.close(linger=0)
                return
            self._idle.append(sock)
            self._cond.notify()

    def _discard(self, sock: zmq.Socket) -> None:
        sock.close(linger=0)
        self._release_slot()

    def _release_slot(self) -> None:
        with self._cond:
            if os.getpid() == self._pid and not self._closed:
                self._open_count -= 1
            self._cond.notify()

    # -- requests ----------------------------------------------------------------------------

    def request(self, message: Any, *, timeouts: Timeouts = Timeouts(), repeatable: bool = False) -> Any:
        """Send ``message`` and return the decoded reply.

        ``repeatable`` marks a request that may be sent again (a read): if the first attempt
        could not even deliver it, one more attempt is made on a fresh socket. A request that
        was delivered is never sent again, whatever happens to its reply.
        """
        frame = self.codec.encode(message)
        # One deadline for the whole request, waiting for a socket included: a caller is
        # answered within the send and receive timeouts, however busy the pool is.
        deadline = time.monotonic() + timeouts.send + timeouts.receive
        attempts = 2 if repeatable else 1
        for attempt in range(1, attempts + 1):
            sock = self._checkout(deadline)
            if attempt == 1:  # the retry belongs to the same admitted request (maybe the probe)
                try:
                    must_connect = self.breaker.admit()
                except CircuitOpen:
                    self._checkin(sock)
                    raise
                if must_connect:
                    sock = self._reconnected(sock, min(timeouts.send, deadline - time.monotonic()))
                    attempts = 1  # it reaches RE Manager: no reason left to try twice
            try:
                reply_frame = self._exchange(sock, frame, timeouts, deadline)
            except RequestTimeout as exc:
                self._discard(sock)
                if exc.delivered or attempt == attempts:
                    self.breaker.record_failure(delivered=exc.delivered)
                    with self._cond:
                        self._timeouts += 1
                    raise
                logger.debug("request not delivered on a pooled socket; retrying on a fresh one")
                continue
            except BaseException:
                self._discard(sock)
                raise
            self._checkin(sock)
            self.breaker.record_success()
            try:
                return self.codec.decode(reply_frame)
            except Exception as exc:
                raise ProtocolError(f"undecodable reply from RE Manager: {exc}") from exc
        raise AssertionError("unreachable")

    @staticmethod
    def _exchange(sock: zmq.Socket, frame: bytes, timeouts: Timeouts, deadline: float) -> bytes:
        sock.setsockopt(zmq.SNDTIMEO, _ms(min(timeouts.send, deadline - time.monotonic())))
        try:
            sock.send(frame)
        except zmq.Again:
            raise RequestTimeout(delivered=False) from None
        except zmq.ZMQError as exc:
            logger.warning("ZeroMQ send failed: %s", exc)
            raise RequestTimeout(delivered=False) from exc
        try:
            if not sock.poll(_ms(min(timeouts.receive, deadline - time.monotonic())), zmq.POLLIN):
                raise RequestTimeout(delivered=True)
            return sock.recv()
        except zmq.ZMQError as exc:
            logger.warning("ZeroMQ receive failed: %s", exc)
            raise RequestTimeout(delivered=True) from exc
