"""Circuit breaker: stop waiting on an RE Manager that does not answer.

After ``threshold`` consecutive timeouts the breaker opens. Without it, every thread would wait
a full timeout on a dead manager and the worker's thread pool would fill up. What an open
breaker lets through depends on the last failure:

* RE Manager took the request but did not answer (it is frozen, or busy): requests fail at once
  for ``open_seconds``; then one request is let through as a probe: if RE Manager answers, the
  breaker closes; if not, it opens again.
* Nothing was delivered (RE Manager is stopped, its port closed): each request may go on only
  once a new connection to RE Manager succeeds (see :class:`~.pool.SocketPool`). A refused
  connection is known at once, so requests fail within a millisecond or so while RE Manager is
  down, and the first request after it is back succeeds. (A probe that waits a whole send
  timeout every ``open_seconds`` would make most requests wait, one worker's after another's.)

Thresholds and times come from the settings (``breaker_threshold``, ``breaker_open_seconds``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CircuitOpen(Exception):
    """Raised instead of sending while RE Manager is considered unreachable."""

    def __init__(self, retry_after: float, failures: int, why: str = "") -> None:
        self.retry_after = retry_after
        self.failures = failures
        super().__init__(
            f"RE Manager did not answer {failures} consecutive requests{why}; "
            f"failing fast for another {retry_after:.1f} s"
        )


class CircuitBreaker:
    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(
        self,
        threshold: int,
        open_seconds: float,
        probe_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 1:
            raise ValueError("breaker threshold must be at least 1")
        self.threshold = threshold
        self.open_seconds = open_seconds
        # A probe that never reports back (its thread died) must not keep the breaker shut forever.
        self.probe_timeout = probe_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_started_at: float | None = None
        self._undelivered = False  # the last failure: nothing reached RE Manager

    @property
    def state(self) -> str:
        with self._lock:
            return self._state(self._clock())

    @property
    def closed(self) -> bool:
        """Whether the breaker is closed (``state == CLOSED``), read without the lock: for metrics."""
        return self._opened_at is None

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def _state(self, now: float) -> str:
        if self._opened_at is None:
            return self.CLOSED
        if now - self._opened_at < self.open_seconds:
            return self.OPEN
        return self.HALF_OPEN

    def admit(self) -> bool:
        """Let a request through, or raise :class:`CircuitOpen`. True: the breaker is open
        because nothing reached RE Manager, and the request may go on only over a new connection
        that RE Manager accepts (else :meth:`unreachable`)."""
        with self._lock:
            now = self._clock()
            state = self._state(now)
            if state == self.CLOSED:
                return False
            if self._undelivered:
                return True
            if state == self.HALF_OPEN:
                probe_stale = self._probe_started_at is not None and now - self._probe_started_at > self.probe_timeout
                if self._probe_started_at is None or probe_stale:
                    self._probe_started_at = now
                    return False
                retry_after = 0.1
            else:
                retry_after = self.open_seconds - (now - self._opened_at)
            raise CircuitOpen(max(retry_after, 0.1), self._failures)

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._probe_started_at = None
            self._undelivered = False

    def unreachable(self, refused: bool = True) -> CircuitOpen:
        """What to raise when RE Manager did not accept the connection of a request that
        :meth:`admit` let through on that condition: ``refused`` at once, or no answer in time.
        (The text says which, so that a client, or a test, can tell the request did not wait.)"""
        how = "connection refused" if refused else "no answer to a connection attempt"
        return CircuitOpen(max(self.open_seconds, 0.1), self._failures, f" and takes no connection ({how})")

    def record_failure(self, *, delivered: bool = True) -> None:
        """A timeout. ``delivered`` False: nothing reached RE Manager, so while the breaker is
        open a request goes on only once RE Manager accepts a new connection. (A connection
        attempt that got no answer at all counts as delivered: finding that out takes a whole
        timeout, so requests then fail at once for ``open_seconds`` between probes.)"""
        with self._lock:
            self._undelivered = not delivered
            self._failures += 1
            now = self._clock()
            # Requests sent before the breaker opened may time out while it is open: they do
            # not hold it open longer (else a burst of them would delay the probe by seconds).
            if self._failures >= self.threshold and self._state(now) != self.OPEN:
                self._opened_at = now
                self._probe_started_at = None
