"""The status cache in milliseconds, over a fake of the gateway's own store and a clock that moves
only when told to: generations and the floor after a write, the published status, leases on the
status read from Redis and their renewal, and a write waiting until every lease taken before it
has ended (read-your-writes across workers)."""

from __future__ import annotations

import threading

import orjson
import pytest

from qs_gateway.manager import StatusCache

from .fakes import FakeStore
from .support import wait_for

# -- the status cache ---------------------------------------------------------------------------


def status_body(uid: str, time_: str = "2026-12-02T10:00:00") -> bytes:
    return orjson.dumps({"status_uid": uid, "time": time_})


def test_a_fetched_status_is_served_until_a_write_or_its_ttl():
    store = FakeStore()
    cache = StatusCache(store, ttl=0.4)
    assert cache.lookup() == (None, 0)
    cache.store_status(status_body("a"), 0, "t1")
    assert cache.lookup() == (status_body("a"), 0)
    store.now += 0.5
    assert cache.lookup() == (None, 0)  # expired
    cache.store_status(status_body("b"), 0, "t2")
    cache.invalidate()
    assert cache.lookup() == (None, 1)


def test_a_status_fetched_before_a_write_is_not_kept_after_it():
    cache = StatusCache(FakeStore(), ttl=10)
    _, generation = cache.lookup()  # a request starts...
    cache.invalidate()  # ...a write is sent meanwhile...
    cache.store_status(status_body("old"), generation, "t1")  # ...and its status arrives late
    assert cache.lookup() == (None, 1)


def test_a_published_status_is_served_only_at_or_after_the_floor():
    store = FakeStore()
    cache = StatusCache(store, ttl=0.1)
    published_key = store.key("status", "published")
    store.run(lambda r: r.set(published_key, b"2026-12-02T10:00:05|" + status_body("published")))
    assert cache.lookup() == (None, 0)  # no floor yet in this generation
    cache.store_status(status_body("fetched"), 0, "2026-12-02T10:00:04")
    store.now += 0.2  # the fetched status expired; the published one is newer than the floor
    assert cache.lookup() == (status_body("published"), 0)
    cache.invalidate()  # after a write, only a status fetched after it sets a new floor
    assert cache.lookup() == (None, 1)
    cache.store_status(status_body("fetched again"), 1, "2026-12-02T10:00:06")
    store.now += 0.2
    assert cache.lookup() == (None, 1)  # the published status is older than the new floor


def test_without_redis_each_process_keeps_read_your_writes():
    store = FakeStore()
    store.down = True
    cache = StatusCache(store, ttl=10)
    cache.store_status(status_body("a"), 0, "t")
    assert cache.lookup() == (status_body("a"), 0)
    cache.invalidate()
    assert cache.lookup() == (None, 1)


class Clock:
    """A monotonic clock that moves only when told to, or when slept on."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class CountedStore(FakeStore):
    """Counts MGETs; each is answered ``read_seconds`` after Redis handled it. Redis keeps the
    time of ``clock``."""

    def __init__(self, clock: Clock, read_seconds: float = 0.0) -> None:
        super().__init__(clock=clock)
        self.read_seconds = read_seconds
        self.reads = 0
        self.readers: list[str] = []  # the thread that sent each MGET

    def mget(self, keys: list[str], mark: tuple[str, int] | None = None) -> list[bytes | None]:
        self.reads += 1
        self.readers.append(threading.current_thread().name)
        found = super().mget(keys, mark)
        self.clock.now += self.read_seconds
        return found


def on_clock(store: CountedStore, lease: float = 0.005) -> StatusCache:
    """A worker's cache (``lease``, a 10 s ttl) on ``store``, timed by the store's clock."""
    return StatusCache(store, ttl=10, lease=lease, clock=store.clock, sleep=store.clock.sleep)


def test_a_status_read_from_redis_is_served_for_its_lease_without_reading_redis_again():
    clock = Clock()
    store = CountedStore(clock)
    cache = on_clock(store)
    cache.store_status(status_body("a"), 0, "t")
    assert [cache.lookup() for _ in range(3)] == [(status_body("a"), 0)] * 3
    assert store.reads == 1
    clock.now += 0.0051
    assert cache.lookup() == (status_body("a"), 0)
    assert store.reads == 2  # the lease ended: read again
    assert StatusCache(store, ttl=10, clock=clock).lookup() == (status_body("a"), 0)


def leased_status(lease: float = 0.004) -> tuple[Clock, CountedStore, StatusCache]:
    """A cache with ``lease`` over a store that holds status "a" (for 10 s)."""
    clock = Clock()
    store = CountedStore(clock)
    cache = on_clock(store, lease)
    cache.store_status(status_body("a"), 0, "t")
    return clock, store, cache


def test_past_half_its_time_one_thread_renews_a_lease_the_others_go_on_with_it():
    clock, store, cache = leased_status()
    cache.lookup()
    clock.now += 0.001
    cache.lookup()
    assert store.reads == 1
    clock.now += 0.0015  # past half the lease: this lookup renews it
    assert cache.lookup() == (status_body("a"), 0)
    assert store.reads == 2
    clock.now += 0.003  # the first lease has ended; the renewed one is past half its time
    with cache._renewal:  # another thread is renewing it
        assert cache.lookup() == (status_body("a"), 0)
    assert store.reads == 2
    store.down = True  # a renewal that fails serves the lease while it lasts
    assert cache.lookup() == (status_body("a"), 0)


def test_in_a_serving_worker_the_cache_renews_its_lease_in_its_own_thread_and_lookups_never_read():
    clock, store, cache = leased_status()
    cache.start_renewing()
    try:
        me = threading.current_thread().name
        assert cache.lookup() == (status_body("a"), 0)  # no lease yet: this lookup reads
        clock.now += 0.0025  # past half the lease: the lookup asks for a renewal and goes on
        assert cache.lookup() == (status_body("a"), 0)
        wait_for(lambda: store.reads == 2 and not cache._renew_wanted.is_set(), 10, "the lease's renewal")
        assert store.readers == [me, "qs-gateway-status-lease"]
        clock.now += 0.002  # the first lease has ended, the renewed one has not
        assert cache.lookup() == (status_body("a"), 0)
        assert store.reads == 2
        cache.invalidate()  # a write through this worker: its lease is dropped, the next lookup reads
        assert cache.lookup() == (None, 1)
        assert store.readers[-1] == me
    finally:
        cache.stop_renewing()
    assert not any(t.name == "qs-gateway-status-lease" for t in threading.enumerate())


def test_in_the_last_quarter_of_its_ttl_one_worker_of_all_fetches_the_next_status_ahead_of_its_end():
    clock = Clock()
    store = CountedStore(clock)
    workers = [StatusCache(store, ttl=0.4, lease=0.004, clock=clock, sleep=clock.sleep) for _ in range(2)]
    refreshed: list[tuple[int, int]] = []  # (worker, generation)

    def fetcher(n: int):
        def refresh(generation: int) -> None:
            refreshed.append((n, generation))
            workers[n].store_status(status_body(f"fetched by {n}"), generation, "t")

        return refresh

    for n, cache in enumerate(workers):
        cache.refresh = fetcher(n)
        cache.start_renewing()
    try:
        start = clock.now

        def renewed_by_both(lookup_at: float) -> None:
            clock.now = start + lookup_at
            for cache in workers:
                assert cache.lookup()[0] is not None  # an expired lease is read again here
            reads = store.reads
            clock.now += 0.0025  # past half the lease: each worker's lookup asks its renewer
            for cache in workers:
                cache.lookup()
            wait_for(
                lambda: store.reads >= reads + 2 and not any(c._renew_wanted.is_set() for c in workers),
                10,
                "both renewals",
            )

        workers[0].store_status(status_body("a"), 0, "t")  # lives until 0.4
        renewed_by_both(0.0)
        assert refreshed == []  # far from its end
        renewed_by_both(0.31)  # 0.0875 s left: in its last quarter
        assert len(refreshed) == 1 and refreshed[0][1] == 0  # one worker fetched, in the current generation
        renewed_by_both(0.32)  # the new status has most of its time left
        assert len(refreshed) == 1
        clock.now = start + 0.45  # the first status would have run out; its successor is served
        assert workers[1].lookup() == (status_body(f"fetched by {refreshed[0][0]}"), 0)
    finally:
        for cache in workers:
            cache.stop_renewing()


class GatedStore(CountedStore):
    """A store whose MGETs wait for ``gate`` once it is closed: a read on its way to Redis."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.gate = threading.Event()
        self.gate.set()

    def mget(self, keys: list[str], mark: tuple[str, int] | None = None) -> list[bytes | None]:
        self.reads += 1
        self.readers.append(threading.current_thread().name)
        self.gate.wait()
        return FakeStore.mget(self, keys, mark)


class RecordedEvent(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.waiters: list[str] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waiters.append(threading.current_thread().name)
        return super().wait(timeout)


def test_a_lookup_without_a_valid_lease_waits_for_a_read_on_its_way_sent_within_a_lease_before_it():
    clock = Clock()
    store = GatedStore(clock)
    cache = on_clock(store, 0.004)
    cache.store_status(status_body("a"), 0, "t")
    answers: dict[str, tuple[bytes | None, int]] = {}

    def lookup_in(name: str) -> threading.Thread:
        thread = threading.Thread(target=lambda: answers.__setitem__(name, cache.lookup()), name=name)
        thread.start()
        return thread

    def a_read_on_its_way(sent_at: float) -> RecordedEvent:
        """A lookup at ``sent_at`` (no lease valid then) whose read waits at the gate."""
        clock.now = sent_at
        store.gate.clear()
        reads = store.reads
        threads.append(lookup_in(f"reader at {sent_at}"))
        wait_for(lambda: store.reads == reads + 1 and cache._in_flight is not None, 10, "the read to be sent")
        cache._in_flight.done = RecordedEvent()  # the reader sets this one when its read is answered
        return cache._in_flight.done

    threads: list[threading.Thread] = []
    try:
        done = a_read_on_its_way(100.0)
        clock.now = 100.0039  # less than a lease after the read was sent: this lookup waits for it
        threads.append(lookup_in("joiner"))
        wait_for(lambda: "joiner" in done.waiters or store.reads > 1, 10, "the joiner to wait or read")
        assert store.readers == ["reader at 100.0"] and done.waiters == ["joiner"]
        store.gate.set()
        for thread in threads:
            thread.join(10)
        assert answers["joiner"] == (status_body("a"), 0) and store.reads == 1

        done = a_read_on_its_way(100.01)  # that lease has ended
        clock.now = 100.0145  # more than a lease after this read was sent: a read of its own
        threads.append(lookup_in("too late to join"))
        wait_for(lambda: store.reads == 3, 10, "the second lookup's own read")
        assert done.waiters == []
        store.gate.set()
        for thread in threads:
            thread.join(10)
        assert answers["too late to join"] == (status_body("a"), 0)
    finally:
        store.gate.set()
        for thread in threads:
            thread.join(10)


def test_a_lease_counts_from_when_the_read_was_sent():
    clock = Clock()
    store = CountedStore(clock, read_seconds=0.006)  # Redis answers after the lease would end
    cache = on_clock(store)
    cache.store_status(status_body("a"), 0, "t")
    cache.lookup()
    cache.lookup()
    assert store.reads == 2


def test_a_miss_is_not_leased():
    clock = Clock()
    store = CountedStore(clock)
    cache = on_clock(store)
    assert cache.lookup() == (None, 0)
    cache.store_status(status_body("a"), 0, "t")
    assert cache.lookup() == (status_body("a"), 0)


def test_a_write_is_answered_only_once_every_lease_taken_before_it_has_ended():
    """Read-your-writes across workers with leases: worker B holds a lease on the old status;
    the write through worker A returns (and is answered) only once B's lease has ended, so
    B's next lookup reads the new generation from Redis."""
    clock = Clock()
    store = CountedStore(clock)
    worker_a = on_clock(store)
    worker_b = on_clock(store)
    worker_a.store_status(status_body("before the write"), 0, "t")
    assert worker_b.lookup() == (status_body("before the write"), 0)
    clock.now += 0.002
    worker_a.invalidate()
    # what was left of B's lease, plus a millisecond for Redis's rounding to whole milliseconds
    assert sum(clock.slept) == pytest.approx(0.004, abs=0.0011)
    assert worker_b.lookup() == (None, 1)
    assert worker_a.lookup() == (None, 1)


def test_a_write_waits_only_while_some_worker_holds_a_lease():
    clock = Clock()
    store = CountedStore(clock)
    cache = on_clock(store)
    cache.store_status(status_body("a"), 0, "t")
    cache.invalidate()  # nobody has read the status
    assert clock.slept == []
    cache.store_status(status_body("b"), 1, "t")
    assert cache.lookup() == (status_body("b"), 1)
    clock.now += 0.0051  # that lease has ended
    cache.invalidate()
    assert clock.slept == []


def test_a_write_waits_for_the_longest_lease_held_whatever_its_own_length():
    """Gateways sharing a Redis may be configured with different leases (during a rolling
    change): a shorter lease taken later does not hide a longer one."""
    clock = Clock()
    store = CountedStore(clock)
    long = on_clock(store, 0.05)
    short = on_clock(store)
    long.store_status(status_body("before the write"), 0, "t")
    assert long.lookup() == (status_body("before the write"), 0)
    clock.now += 0.001
    assert short.lookup() == (status_body("before the write"), 0)
    short.invalidate()
    assert sum(clock.slept) >= 0.049  # the long lease's time left
    assert long.lookup() == (None, 1)


def test_when_redis_cannot_be_asked_a_write_waits_its_own_lease():
    clock = Clock()
    store = CountedStore(clock)
    cache = on_clock(store)
    store.down = True
    cache.invalidate()
    assert sum(clock.slept) == pytest.approx(0.005)


def test_without_a_lease_a_write_does_not_wait():
    clock = Clock()
    store = CountedStore(clock)
    cache = StatusCache(store, ttl=10, clock=clock, sleep=clock.sleep)
    cache.store_status(status_body("a"), 0, "t")
    assert cache.lookup() == (status_body("a"), 0)
    cache.invalidate()
    assert clock.slept == []
