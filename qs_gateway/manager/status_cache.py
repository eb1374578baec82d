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
seconds, counted from when that read was *sent*. Every write waits ``lease`` seconds after its
generation was incremented before it is answered (a "commit wait"). So a read that arrives after
a write was answered uses a status read from Redis after that write's increment, on any worker
and any host: the lease ended before the write's answer left, whatever thread took which turn.
Only durations are compared, each on one host's monotonic clock. Past half its time, one thread
renews the lease while the others go on with it. ``lease = 0`` reads Redis on every lookup.

If Redis is unavailable, each process falls back to its own memory with the same rules for the
fetched status, which keeps read-your-writes within a process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

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
                found = self._read(self.store.mget(self._keys))
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
        if self.store is not None:
            try:
                self.store.run(lambda r: r.incr(self._keys[0]))
            except StoreUnavailable:
                pass  # other workers cannot read Redis either; their leases end all the same
            if self.lease > 0:
                incremented_at = self._clock()
                while (left := incremented_at + self.lease - self._clock()) > 0:
                    self._sleep(left)
