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
a wait). Past half its time, the lease is renewed while lookups go on with it: by the cache's own
renewing thread in a serving worker (:meth:`StatusCache.start_renewing`), so that no request
waits for Redis while the status is read steadily (under load, a thread that waited on a socket
waits again for the interpreter lock, up to a switch interval); else by one of the requests.
A lookup that finds no lease valid waits for a leased read already on its way to Redis, if that
read was sent less than ``lease`` before the lookup began, and serves its status: it is as valid
for this lookup as a lease found at its start (a write answered before the lookup began was
answered after that read's lease ended, so the read was handled after the write's increment).
Under load the renewing thread's read can take longer than the lease has left; without this,
every request arriving meanwhile sent a read of its own, queued behind the others for Redis and
the interpreter lock, and those requests were the slowest hundredth.
``lease = 0`` reads Redis on every lookup, and writes do not wait.

While lookups renew leases, the renewing thread also keeps the fetched status from running out:
in the last quarter of its ``ttl``, one worker of all (a short claim in Redis) fetches the next
one from RE Manager (:attr:`StatusCache.refresh`, the manager client's fetch), so requests do
not all find it gone at once and wait for that fetch. A status is never served older than before.

If Redis is unavailable, each process falls back to its own memory with the same rules for the
fetched status, which keeps read-your-writes within a process.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from ..redis_store import RedisStore, StoreUnavailable
from ..streaming.keys import StreamKeys

logger = logging.getLogger(__name__)

# A write's step in the status cache (see the module's note): KEYS[1] (the
# generation) is incremented, then KEYS[2] (the lease marker) says how long it has left.
INCREMENT_THEN_TIME_LEFT = """
redis.call('INCR', KEYS[1])
return redis.call('PTTL', KEYS[2])
"""

# The fetch ahead of the status's end: 1 if KEYS[1] (the fetched status) is missing or has less
# than ARGV[1] ms left and this caller claimed KEYS[2] (NX, for ARGV[1] ms), else 0. A key with
# no expiry (-1) is not one a gateway set: nothing to fetch ahead of.
CLAIM_IF_ENDING = """
local left = redis.call('PTTL', KEYS[1])
if left == -1 or left >= tonumber(ARGV[1]) then return 0 end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return 1 end
return 0
"""


class _LeasedRead:
    """A leased read on its way to Redis: lookups that began within its lease wait for it."""

    __slots__ = ("sent_at", "done")

    def __init__(self, sent_at: float) -> None:
        self.sent_at = sent_at
        self.done = threading.Event()


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
        self._in_flight: _LeasedRead | None = None  # the latest leased read not yet answered
        self._renewal = threading.Lock()  # held by the one thread renewing a lease ahead of its end
        self._renew_wanted = threading.Event()  # a lookup past half the lease asks the renewer
        self._renewer: threading.Thread | None = None
        self._stop_renewing = False
        # Set by the manager client: fetch the status from RE Manager and keep it, in a generation.
        self.refresh: Callable[[int], object] | None = None
        self._ttl_ms = max(int(ttl * 1000), 1)
        self._lock = threading.Lock()
        self._local_generation = 0
        self._local: tuple[int, float, bytes] | None = None  # generation, expiry, body
        if store is not None:
            shared = StreamKeys.of(store)
            self._keys = [
                store.key("status", "generation"),
                store.key("status", "cached"),
                shared.status_floor,
                shared.published_status,
            ]
            # The lease marker: set before each leased read, for as long as the lease lasts.
            self._marker = store.key("status", "leased")
            self._mark = (self._marker, max(math.ceil(lease * 1000), 1)) if lease > 0 else None
            # Held (NX) by the one worker fetching the next status, for the last quarter of ttl.
            self._refreshing = store.key("status", "refreshing")
            self._refresh_ms = max(self._ttl_ms // 4, 1)

    def lookup(self) -> tuple[bytes | None, int]:
        """Return ``(body or None, current generation)``."""
        if self.store is not None:
            sent_at = self._clock()
            leased = self._leased
            renewing = False
            if leased is not None and sent_at - leased[0] < self.lease:
                if sent_at - leased[0] < self.lease / 2:
                    return leased[1], leased[2]
                # Past half its time the lease is renewed ahead of its end; the lookups go on with it.
                if self._renewer is not None:
                    if not self._renew_wanted.is_set():
                        self._renew_wanted.set()
                    return leased[1], leased[2]
                if not self._renewal.acquire(blocking=False):  # one request renews it
                    return leased[1], leased[2]
                renewing = True
            elif self._joined_read_in_flight(sent_at):
                leased = self._leased
                if leased is not None and sent_at - leased[0] < self.lease:
                    return leased[1], leased[2]
            try:
                found = self._read_leased(sent_at)
            except StoreUnavailable:
                if renewing:
                    return leased[1], leased[2]  # still within its time
            else:
                return found
            finally:
                if renewing:
                    self._renewal.release()
        with self._lock:
            local = self._local
            if local is not None and local[0] == self._local_generation and local[1] > time.monotonic():
                return local[2], self._local_generation
            return None, self._local_generation

    def _read_leased(self, sent_at: float) -> tuple[bytes | None, int]:
        """Read the status from Redis (marking a lease, if leases are on) and keep the lease."""
        if self.lease <= 0:
            return self._read(self.store.mget(self._keys, self._mark))
        flight = self._in_flight = _LeasedRead(sent_at)
        try:
            found = self._read(self.store.mget(self._keys, self._mark))
            current = self._leased
            if found[0] is None:
                self._leased = None  # a write came: the lease would only be served until it ends
            elif current is None or current[0] < sent_at:
                self._leased = (sent_at, found[0], found[1])
            return found
        finally:
            flight.done.set()
            if self._in_flight is flight:
                self._in_flight = None

    def _joined_read_in_flight(self, began_at: float) -> bool:
        """Waits for the leased read on its way, if it was sent less than ``lease`` before
        ``began_at`` (see the module's note); whether there was one to wait for."""
        flight = self._in_flight
        if flight is None or began_at - flight.sent_at >= self.lease:
            return False
        flight.done.wait()  # the store's socket timeouts bound the read
        return True

    # -- the renewing thread (a serving worker's, started after the fork) ------------------------

    def start_renewing(self) -> None:
        """Renew leases in a thread of this cache's own from now on (see the module's note)."""
        if self.store is None or self.lease <= 0 or self._renewer is not None:
            return
        self._stop_renewing = False
        self._renewer = threading.Thread(target=self._renew_when_asked, name="qs-gateway-status-lease", daemon=True)
        self._renewer.start()

    def stop_renewing(self, timeout: float = 5.0) -> None:
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            self._stop_renewing = True
            self._renew_wanted.set()
            renewer.join(timeout)

    def _renew_when_asked(self) -> None:
        while True:
            self._renew_wanted.wait()
            if self._stop_renewing:
                return
            try:
                _, generation = self._read_leased(self._clock())
                if self.refresh is not None and self._claimed_refresh():
                    self.refresh(generation)
            except StoreUnavailable:
                pass  # the lease is served while it lasts; then lookups read Redis themselves
            except Exception as exc:  # RE Manager did not answer: the requests that need it will say so
                logger.debug("refreshing the status ahead of its end failed: %s", exc)
            # Cleared after the read: lookups meanwhile go on with the lease they have.
            self._renew_wanted.clear()

    def _claimed_refresh(self) -> bool:
        """Whether the fetched status is missing or in the last quarter of its ttl, and this
        worker claimed fetching the next one (one round trip)."""
        keys = (self._keys[1], self._refreshing)
        return bool(self.store.hot_script(CLAIM_IF_ENDING, keys, (self._refresh_ms,)))

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
            left_ms = self.store.hot_script(INCREMENT_THEN_TIME_LEFT, (self._keys[0], self._marker))
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
