"""Fan-out inside one worker: one thread reads the Redis streams, every open stream gets a queue.

Each open HTTP stream (NDJSON, SSE, websocket) holds a worker thread for its whole life, so
their number per worker is capped; over the cap :class:`TooManyStreams` is raised (503). Each
stream has its own bounded queue: a slow consumer loses its oldest messages and never slows the
reader or the other streams. On shutdown every stream is told to end.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import redis

from ..redis_connect import redis_client
from ..redis_store import StoreUnavailable
from .keys import format_id, parse_id

logger = logging.getLogger(__name__)

Entry = tuple[str, bytes]  # (stream id, JSON data)


class TooManyStreams(Exception):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"this worker already serves its limit of {limit} open streams")


class StreamClosed(Exception):
    """The worker is shutting down (or the stream was closed)."""


@dataclass(eq=False)
class Subscription:
    key: str
    queue: collections.deque = field(repr=False)
    last_id: tuple[int, int] = (-1, -1)
    dropped: int = 0
    closed: bool = False
    on_close: Callable[[], None] | None = field(default=None, repr=False)  # e.g. a metrics gauge
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def push(self, entries: Iterable[Entry]) -> None:
        with self._cond:
            for entry in entries:
                if parse_id(entry[0]) <= self.last_id:
                    continue  # already delivered by the backfill
                if len(self.queue) == self.queue.maxlen:
                    self.dropped += 1
                self.queue.append(entry)
                self.last_id = parse_id(entry[0])
            self._cond.notify()

    def get(self, timeout: float) -> list[Entry]:
        """Entries that arrived, waiting up to ``timeout``; [] on timeout; StreamClosed at the end."""
        with self._cond:
            if not self.queue and not self.closed:
                self._cond.wait(timeout)
            if self.closed:
                raise StreamClosed()
            entries = list(self.queue)
            self.queue.clear()
            return entries

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class StreamHub:
    def __init__(self, redis_url: str, *, max_streams: int, queue_length: int, block_seconds: float = 1.0) -> None:
        self.redis_url = redis_url
        self.max_streams = max_streams
        self.queue_length = queue_length
        self.block_ms = int(block_seconds * 1000)
        self._lock = threading.Lock()
        self._subscriptions: set[Subscription] = set()
        self._reader: threading.Thread | None = None
        self._client: redis.Redis | None = None
        self._shutting_down = threading.Event()

    @property
    def open_streams(self) -> int:
        return len(self._subscriptions)

    def _redis(self) -> redis.Redis:
        if self._client is None:
            # its own connection: a blocking XREAD must not wait behind (or hold up) other calls
            self._client = redis_client(self.redis_url, timeout=self.block_ms / 1000 + 5, connect_timeout=2)
        return self._client

    def subscribe(self, key: str, after: str | None = None) -> Subscription:
        """Open a stream on Redis stream ``key``: entries after ``after`` (a stream id), or new ones."""
        if self._shutting_down.is_set():
            raise StreamClosed()
        client = self._redis()
        subscription = Subscription(key, collections.deque(maxlen=self.queue_length))
        if after is None:
            try:
                newest = client.xrevrange(key, count=1)
            except redis.RedisError as exc:
                raise StoreUnavailable(f"Redis at {self.redis_url} did not answer: {exc}") from exc
            after = newest[0][0].decode() if newest else "0-0"
        subscription.last_id = parse_id(after)
        with self._lock:
            if len(self._subscriptions) >= self.max_streams:
                raise TooManyStreams(self.max_streams)
            self._subscriptions.add(subscription)
            if self._reader is None or not self._reader.is_alive():
                self._reader = threading.Thread(target=self._read, name="qs-gateway-streams", daemon=True)
                self._reader.start()
        try:
            # Registered first, then the backlog: whatever the reader delivers meanwhile is
            # de-duplicated by id, and nothing falls between the two.
            backlog = client.xrange(key, min=f"({format_id(subscription.last_id)}", max="+", count=self.queue_length)
            subscription.push(_entries(backlog))
        except redis.RedisError as exc:
            self.unsubscribe(subscription)
            raise StoreUnavailable(f"Redis at {self.redis_url} did not answer: {exc}") from exc
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.close()
        with self._lock:
            if subscription not in self._subscriptions:
                return
            self._subscriptions.discard(subscription)
        if subscription.on_close is not None:
            subscription.on_close()

    def shutdown(self) -> None:
        """The worker is stopping: end every stream now."""
        self._shutting_down.set()
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            subscription.close()

    def _read(self) -> None:
        client = self._redis()
        positions: dict[str, str] = {}
        while not self._shutting_down.is_set():
            with self._lock:
                if not self._subscriptions:
                    self._reader = None
                    return
                keys = {s.key for s in self._subscriptions}
                for key in positions.keys() - keys:
                    del positions[key]
                for key in keys - positions.keys():
                    # start where the earliest stream on this key starts
                    positions[key] = format_id(min(s.last_id for s in self._subscriptions if s.key == key))
            try:
                answer = client.xread({key: positions[key] for key in keys}, block=self.block_ms)
            except redis.RedisError as exc:
                logger.warning("Reading the console/status streams from Redis failed: %s", exc)
                self._shutting_down.wait(1.0)
                continue
            for raw_key, raw_entries in answer or ():
                key = raw_key.decode()
                entries = _entries(raw_entries)
                if not entries:
                    continue
                positions[key] = entries[-1][0]
                with self._lock:
                    receivers = [s for s in self._subscriptions if s.key == key]
                for subscription in receivers:
                    subscription.push(entries)


def _entries(raw: Iterable) -> list[Entry]:
    return [(entry_id.decode(), fields[b"data"]) for entry_id, fields in raw if b"data" in fields]
