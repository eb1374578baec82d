"""The last RE Manager status, shared by all workers, with read-your-writes.

Every write sent through any worker increments a *generation* in Redis. A cached status carries
the generation that was current when its request started, and is served only while that is
still the current generation and the entry has not expired (Redis expires it after ``ttl``).
So a client that wrote through worker A and then reads through worker B never sees a status
older than its write. If Redis is unavailable, each process falls back to its own memory with
the same rules, which keeps read-your-writes within a process.
"""

from __future__ import annotations

import threading
import time

from ..redis_store import RedisStore, StoreUnavailable


class StatusCache:
    def __init__(self, store: RedisStore | None, ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self._ttl_ms = max(int(ttl * 1000), 1)
        self._lock = threading.Lock()
        self._local_generation = 0
        self._local: tuple[int, float, bytes] | None = None  # generation, expiry, body
        if store is not None:
            self._gen_key = store.key("status", "generation")
            self._status_key = store.key("status", "cached")

    def lookup(self) -> tuple[bytes | None, int]:
        """Return ``(body or None, current generation)``."""
        if self.store is not None:
            try:
                generation, entry = self.store.run(lambda r: r.mget(self._gen_key, self._status_key))
            except StoreUnavailable:
                pass
            else:
                generation = int(generation or 0)
                if entry is not None:
                    entry_generation, _, body = entry.partition(b"|")
                    if int(entry_generation) == generation:
                        return body, generation
                return None, generation
        with self._lock:
            local = self._local
            if local is not None and local[0] == self._local_generation and local[1] > time.monotonic():
                return local[2], self._local_generation
            return None, self._local_generation

    def store_status(self, body: bytes, generation: int) -> None:
        if self.store is not None:
            entry = b"%d|%s" % (generation, body)
            try:
                self.store.run(lambda r: r.set(self._status_key, entry, px=self._ttl_ms))
                return
            except StoreUnavailable:
                pass
        with self._lock:
            if generation == self._local_generation:
                self._local = (generation, time.monotonic() + self.ttl, body)

    def invalidate(self) -> None:
        """A write was sent: no status fetched before it may be served any more."""
        with self._lock:
            self._local_generation += 1
            self._local = None
        if self.store is not None:
            try:
                self.store.run(lambda r: r.incr(self._gen_key))
            except StoreUnavailable:
                pass
