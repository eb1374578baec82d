"""Circuit breaker: stop waiting on an RE Manager that does not answer.

After ``threshold`` consecutive timeouts the breaker opens and requests fail at once for
``open_seconds``. Then one request is let through as a probe: if RE Manager answers, the breaker
closes; if not, it opens again. Without this, every thread would wait a full receive timeout on a
dead manager and the worker's thread pool would fill up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CircuitOpen(Exception):
    """Raised instead of sending while RE Manager is considered unreachable."""

    def __init__(self, retry_after: float, failures: int) -> None:
        self.retry_after = retry_after
        self.failures = failures
        super().__init__(
            f"RE Manager did not answer {failures} consecutive requests; failing fast for another {retry_after:.1f} s"
        )


class CircuitBreaker:
    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(
        self,
        threshold: int = 3,
        open_seconds: float = 1.0,
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

    @property
    def state(self) -> str:
        with self._lock:
            return self._state(self._clock())

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def _state(self, now: float) -> str:
        if self._opened_at is None:
            return self.CLOSED
        if now - self._opened_at < self.open_seconds:
            return self.OPEN
        return self.HALF_OPEN

    def admit(self) -> None:
        """Let a request through, or raise :class:`CircuitOpen`."""
        with self._lock:
            now = self._clock()
            state = self._state(now)
            if state == self.CLOSED:
                return
            if state == self.HALF_OPEN:
                probe_stale = self._probe_started_at is not None and now - self._probe_started_at > self.probe_timeout
                if self._probe_started_at is None or probe_stale:
                    self._probe_started_at = now
                    return
                retry_after = 0.1
            else:
                retry_after = self.open_seconds - (now - self._opened_at)
            raise CircuitOpen(max(retry_after, 0.1), self._failures)

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._probe_started_at = None

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._failures >= self.threshold:
                self._opened_at = self._clock()
                self._probe_started_at = None
