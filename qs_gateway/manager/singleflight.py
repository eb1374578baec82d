"""Single-flight: concurrent identical reads share one request to RE Manager."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any


class _Flight:
    __slots__ = ("done", "result", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class SingleFlight:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight] = {}

    def do(self, key: Hashable, fn: Callable[[], Any], wait_timeout: float | None = None) -> Any:
        """Run ``fn`` unless a call with the same ``key`` is already running; then share its outcome.

        The key must say everything the result depends on (for the status: the write
        generation seen by the caller), so that nobody receives an answer older than its own
        last write.
        """
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
        if not leader:
            if flight.done.wait(wait_timeout):
                if flight.error is not None:
                    raise flight.error
                return flight.result
            return fn()
        try:
            flight.result = fn()
            return flight.result
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()
