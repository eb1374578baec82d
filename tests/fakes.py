"""Fakes of the gateway's own lower layers, for unit tests of the manager layer in milliseconds.

* :class:`FakeStore` has :class:`qs_gateway.redis_store.RedisStore`'s interface over a dict,
  with the few Redis commands the status cache uses, and a clock the test moves.
* :class:`FakeTransport` has :class:`qs_gateway.transport.SocketPool`'s ``request``: it answers
  from a function of the message and records what was sent, and how.
* :func:`counted_flights` makes single flights count the callers that wait on them, so a test
  waits for them to be waiting, not for a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from qs_gateway.manager import singleflight
from qs_gateway.redis_store import StoreUnavailable
from qs_gateway.transport import Timeouts


class _FakeRedis:
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def set(self, key: str, value: bytes, px: int | None = None) -> _FakeRedis:
        expiry = self.store.now + px / 1000 if px else None
        self.store.data[key] = (value if isinstance(value, bytes) else str(value).encode(), expiry)
        return self

    def get(self, key: str) -> bytes | None:
        value, expiry = self.store.data.get(key, (None, None))
        if expiry is not None and self.store.now >= expiry:
            return None
        return value

    def incr(self, key: str) -> int:
        value = int(self.get(key) or 0) + 1
        self.set(key, str(value).encode())
        return value

    def mget(self, keys: list[str]) -> list[bytes | None]:
        return [self.get(key) for key in keys]

    def pipeline(self, transaction: bool = False) -> _FakeRedis:
        return self

    def execute(self) -> list:
        return []


class FakeStore:
    def __init__(self, prefix: str = "test") -> None:
        self.prefix = prefix
        self.data: dict[str, tuple[bytes, float | None]] = {}
        self.now = 0.0
        self.down = False

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def run(self, operation: Callable[[Any], Any]) -> Any:
        if self.down:
            raise StoreUnavailable("the fake Redis is down")
        return operation(_FakeRedis(self))

    def mget(self, keys: list[str]) -> list[bytes | None]:
        return self.run(lambda r: r.mget(keys))


class FakeTransport:
    """Answers ``answer(method, params)``; ``gate`` (if set) is waited for before answering."""

    def __init__(self, answer: Callable[[str, dict], Any]) -> None:
        self.answer = answer
        self.sent: list[tuple[str, dict, Timeouts, bool]] = []
        self.gate: threading.Event | None = None
        self._lock = threading.Lock()

    def request(self, message: dict, *, timeouts: Timeouts = Timeouts(), repeatable: bool = False) -> Any:
        with self._lock:
            self.sent.append((message["method"], message["params"], timeouts, repeatable))
        if self.gate is not None:
            self.gate.wait(5)
        return self.answer(message["method"], message["params"])

    @property
    def methods(self) -> list[str]:
        return [method for method, *_ in self.sent]


class _CountingEvent(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.waiters = 0
        self._count = threading.Lock()

    def wait(self, timeout: float | None = None) -> bool:
        with self._count:
            self.waiters += 1
        return super().wait(timeout)


def counted_flights(monkeypatch: Any) -> Callable[[], int]:
    """From now on single flights count their waiting callers; returns how many wait, in all."""
    flights: list[Any] = []

    class CountedFlight(singleflight._Flight):
        __slots__ = ()

        def __init__(self) -> None:
            super().__init__()
            self.done = _CountingEvent()
            flights.append(self)

    monkeypatch.setattr(singleflight, "_Flight", CountedFlight)
    return lambda: sum(flight.done.waiters for flight in flights)
