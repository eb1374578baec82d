"""The last RE Manager status, shared by all workers, with read-your-writes.

Two sources, both in Redis:

* the status a worker *fetched* (REQ ``status``), kept for ``ttl``;
* the status RE Manager *published* (kept up to date by the ingest leader, see
  :mod:`qs_gateway.streaming.ingest`), which expires when RE Manager stops publishing.

Every write sent through any worker increments a *generation*. A fetched status carries the
generation that was current when its request started, and is served only while that is still
the current generation. A published status may have left RE Manager before a write and arrived
after it, so it is served only once a status fetched in the current generation has set a
*floor*: RE Manager's ``time`` of that status. Published statuses older than the floor are not
served. So a client that wrote through worker A and then reads through worker B never sees a
status older than its write.

A worker may serve the status it last read from Redis without reading it again for ``lease``
seconds, counted from when that read was *sent*. Each such read also marks, in the same round
trip and before it, that a lease was taken: a *lease marker* key that Redis expires ``lease``
after it was set. A write increments the generation and reads how long the marker has left in
one round trip, and is answered only once that time (plus a millisecond of rounding) has passed
(a "commit wait"). Every lease whose read Redis handled before the increment ended by then (it
began when its read was sent, before its marker was set), so a read that arrives after a write
was answered uses a status read from Redis after that write's increment, on any worker and any
host, whatever thread took which turn. A write waits only while some worker holds a lease: not
at all when nobody has read the status for ``lease`` seconds. Durations are compared on Redis's
clock and each host's monotonic clock (a step of Redis's wall clock during a lease could shorten
a wait). Past half its time, one thread renews the lease while the others go on with it.
``lease = 0`` reads Redis on every lookup, and writes do not wait.

If Redis is unavailable, each process falls back to its own memory with the same rules for the
fetched status, which keeps read-your-writes within a process.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from ..redis_store import RedisStore, StoreUnavailable


class StatusCache:
    def __init__(
        self,
        store: RedisStore | None,
        ttl: float,
        lease: float = 0.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.lease = lease
        self._clock = clock
        self._sleep = sleep
        # (when the read was sent, body, generation) of the last status read from Redis; read
        # and replaced without a lock: any lease kept is valid for its own read's time.
        self._leased: tuple[float, bytes, int] | None = None
        self._renewal = threading.Lock()  # held by the one thread renewing a lease ahead of its end
        self._ttl_ms = max(int(ttl * 1000), 1)
        self._lock = threading.Lock()
        self._local_generation = 0
        self._local: tuple[int, float, bytes] | None = None  # generation, expiry, body
        if store is not None:
            self._keys = [
                store.key("status", "generation"),
                store.key("status", "cached"),
                store.key("status", "floor"),
                store.key("status", "published"),
            ]
            # The lease marker: set before each leased read, for as long as the lease lasts.
            self._marker = store.key("status", "leased")
            self._mark = (self._marker, max(math.ceil(lease * 1000), 1)) if lease > 0 else None

    def lookup(self) -> tuple[bytes | None, int]:
        """Return ``(body or None, current generation)``."""
        if self.store is not None:
            sent_at = self._clock()
            leased = self._leased
            renewing = False
            if leased is not None and sent_at - leased[0] < self.lease:
                # Past half its time, one thread at a time renews the lease ahead of its end
                # (the others go on with it), so that under load few requests wait for Redis.
                if sent_at - leased[0] < self.lease / 2 or not self._renewal.acquire(blocking=False):
                    return leased[1], leased[2]
                renewing = True
            try:
                found = self._read(self.store.mget(self._keys, self._mark))
            except StoreUnavailable:
                if renewing:
                    return leased[1], leased[2]  # still within its time
            else:
                if self.lease > 0:
                    current = self._leased
                    if found[0] is None:
                        self._leased = None  # a write came: the lease would only be served until it ends
                    elif current is None or current[0] < sent_at:
                        self._leased = (sent_at, found[0], found[1])
                return found
            finally:
                if renewing:
                    self._renewal.release()
        with self._lock:
            local = self._local
            if local is not None and local[0] == self._local_generation and local[1] > time.monotonic():
                return local[2], self._local_generation
            return None, self._local_generation

    @staticmethod
    def _read(values: list[bytes | None]) -> tuple[bytes | None, int]:
        generation_value, cached, floor, published = values
        generation = int(generation_value or 0)
        if cached is not None:
            cached_generation, _, body = cached.partition(b"|")
            if int(cached_generation) == generation:
                return body, generation
        if published is not None and floor is not None:
            floor_generation, _, floor_time = floor.partition(b"|")
            published_time, _, body = published.partition(b"|")
            # RE Manager's ISO timestamps of one format compare as strings
            if int(floor_generation) == generation and published_time >= floor_time:
                return body, generation
        return None, generation

    def store_status(self, body: bytes, generation: int, status_time: str) -> None:
        """Keep a status fetched by a request that started in ``generation``."""
        if self.store is not None:
            generation_key, cached_key, floor_key, _ = self._keys
            entry = b"%d|%s" % (generation, body)
            floor = f"{generation}|{status_time}".encode()
            try:
                self.store.run(
                    lambda r: (
                        r.pipeline(transaction=False)
                        .set(cached_key, entry, px=self._ttl_ms)
                        .set(floor_key, floor)
                        .execute()
                    )
                )
                return
            except StoreUnavailable:
                pass
        with self._lock:
            if generation == self._local_generation:
                self._local = (generation, time.monotonic() + self.ttl, body)

    def invalidate(self) -> None:
        """A write was sent: no status fetched before it may be served any more.

        Returns once every lease taken before the increment has ended (see the module's note);
        the caller answers the write after that."""
        with self._lock:
            self._local_generation += 1
            self._local = None
        self._leased = None
        if self.store is None:
            return
        try:
            left_ms = self.store.run(self._increment)
        except StoreUnavailable:
            # Other workers may still hold leases they took before Redis went away: wait for
            # the longest this worker would hold one.
            left = self.lease
        else:
            # -2: no lease is held anywhere; -1 (a marker without expiry, not set by a gateway): as above
            left = (left_ms + 1) / 1000 if left_ms >= 0 else (0.0 if left_ms == -2 else self.lease)
        if left > 0:
            incremented_at = self._clock()
            while (remaining := incremented_at + left - self._clock()) > 0:
                self._sleep(remaining)

    def _increment(self, r: Any) -> int:
        """Increment the generation, then read the marker's time left (in milliseconds; -2: none)."""
        return r.pipeline(transaction=False).incr(self._keys[0]).pttl(self._marker).execute()[1]
