"""Fakes of the gateway's own lower layers, for unit tests of the manager layer in milliseconds.

* :class:`FakeStore` has :class:`qs_gateway.redis_store.RedisStore`'s interface over a dict,
  with the few Redis commands the status cache uses, and a clock (``now``) the test moves.
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
from qs_gateway.manager.status_cache import CLAIM_IF_ENDING, INCREMENT_THEN_TIME_LEFT
from qs_gateway.redis_store import StoreUnavailable
from qs_gateway.transport import Timeouts


class _FakeRedis:
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def set(self, key: str, value: bytes, px: int | None = None, nx: bool = False) -> bool:
        if nx and self.get(key) is not None:
            return False
        expiry = self.store.now + px / 1000 if px else None
        self.store.data[key] = (value if isinstance(value, bytes) else str(value).encode(), expiry)
        return True

    def get(self, key: str) -> bytes | None:
        value, expiry = self.store.data.get(key, (None, None))
        if expiry is not None and self.store.now >= expiry:
            return None
        return value

    def incr(self, key: str) -> int:
        value = int(self.get(key) or 0) + 1
        self.set(key, str(value).encode())
        return value

    def pttl(self, key: str) -> int:
        """Milliseconds left, as Redis answers: -2 no such key, -1 no expiry."""
        value, expiry = self.store.data.get(key, (None, None))
        if value is None or (expiry is not None and self.store.now >= expiry):
            return -2
        return -1 if expiry is None else int((expiry - self.store.now) * 1000)

    def mget(self, keys: list[str]) -> list[bytes | None]:
        return [self.get(key) for key in keys]

    def pipeline(self, transaction: bool = False) -> _FakePipeline:
        return _FakePipeline(self)


class _FakePipeline:
    """Runs each command at once and answers their replies in order from ``execute()``."""

    def __init__(self, redis: _FakeRedis) -> None:
        self.redis = redis
        self.replies: list[Any] = []

    def __getattr__(self, name: str) -> Callable[..., _FakePipeline]:
        command = getattr(self.redis, name)

        def queued(*args: Any, **kwargs: Any) -> _FakePipeline:
            self.replies.append(command(*args, **kwargs))
            return self

        return queued

    def execute(self) -> list[Any]:
        return self.replies


class FakeStore:
    def __init__(self, prefix: str = "test", clock: Callable[[], float] | None = None) -> None:
        self.prefix = prefix
        self.data: dict[str, tuple[bytes, float | None]] = {}
        self.clock = clock  # Redis's time: the test's clock if given, else ``now``
        self._now = 0.0
        self.down = False

    @property
    def now(self) -> float:
        return self.clock() if self.clock is not None else self._now

    @now.setter
    def now(self, value: float) -> None:
        self._now = value

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def run(self, operation: Callable[[Any], Any]) -> Any:
        if self.down:
            raise StoreUnavailable("the fake Redis is down")
        return operation(_FakeRedis(self))

    def mget(self, keys: list[str], mark: tuple[str, int] | None = None) -> list[bytes | None]:
        def marked_mget(r: _FakeRedis) -> list[bytes | None]:
            if mark is not None and r.pttl(mark[0]) < mark[1]:  # as redis_hot_path.MARKED_MGET
                r.set(mark[0], b"1", px=mark[1])
            return r.mget(keys)

        return self.run(marked_mget)

    def hot_script(self, source: str, keys: tuple[str, ...], args: tuple[str | int, ...] = ()) -> Any:
        """The status cache's scripts, step by step as their Lua does."""

        def increment_then_time_left(r: _FakeRedis) -> int:
            r.incr(keys[0])
            return r.pttl(keys[1])

        def claim_if_ending(r: _FakeRedis) -> int:
            left = r.pttl(keys[0])
            if left == -1 or left >= int(args[0]):
                return 0
            return int(r.set(keys[1], b"1", nx=True, px=int(args[0])))

        scripts = {INCREMENT_THEN_TIME_LEFT: increment_then_time_left, CLAIM_IF_ENDING: claim_if_ending}
        if source not in scripts:
            raise NotImplementedError("the fake store runs only the status cache's scripts")
        return self.run(scripts[source])


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
