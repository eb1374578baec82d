"""Streaming pieces on their own: text rendering, the ingest lease (real Redis). The fan-out:
tests/test_stream_fanout.py."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from bluesky_queueserver_api.console_monitor import _ConsoleMonitor

import qs_gateway
from qs_gateway.config.redis import RedisSettings
from qs_gateway.redis_store import RedisStore
from qs_gateway.serving.stack import start_redis
from qs_gateway.streaming.console import ConsoleLog
from qs_gateway.streaming.ingest import Ingester, LeaseLost
from qs_gateway.streaming.render import ConsoleText

from .support import wait_for


class ClientRendering(_ConsoleMonitor):
    """bluesky-queueserver-api's own console text buffer: the behaviour to match."""

    def _monitor_init(self):
        pass

    def add(self, msg):
        self._add_msg_to_text_buffer({"msg": msg})
        self._adjust_text_buffer_size()
        self._text.clear()


@pytest.mark.parametrize("seed", range(20))
def test_rendering_matches_the_client_library(seed):
    rng = random.Random(seed)
    pieces = ["ab", "xyz", "0123456789", " ", "\n", "\r", "\x1b[A", "\n\n", "é"]
    ours, theirs = ConsoleText(max_lines=7), ClientRendering(max_lines=7)
    for _ in range(200):
        msg = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 6)))
        ours.add(msg)
        theirs.add(msg)
        for nlines in (None, 1, 3, 7, 50):
            assert ours.text(nlines) == theirs._text_generate(nlines), (seed, nlines)
    assert ours.text(0) == ""


class SilentSubscriber:
    def open(self):
        pass

    def close(self):
        pass

    def receive(self, timeout, limit=1000):
        time.sleep(timeout)
        return []


def test_exactly_one_ingester_leads_and_a_successor_takes_over(redis_port):
    store = RedisStore(RedisSettings(url=f"redis://127.0.0.1:{redis_port}/0"), prefix=f"lease_test_{time.time_ns()}")
    ingesters = [Ingester(store, SilentSubscriber, lease_seconds=0.5) for _ in range(3)]
    for ingester in ingesters:
        ingester.start()
    try:
        wait_for(lambda: sum(i.is_leader for i in ingesters) == 1, 30, "one leader")
        for _ in range(10):  # and it stays one
            assert sum(i.is_leader for i in ingesters) == 1
            time.sleep(0.1)
        leader = next(i for i in ingesters if i.is_leader)
        leader.stop()  # a worker that stops hands the lease over at once
        wait_for(lambda: sum(i.is_leader for i in ingesters) == 1, 30, "a successor")
        assert not leader.is_leader
    finally:
        for ingester in ingesters:
            ingester.stop()


class OneStatusSubscriber(SilentSubscriber):
    def __init__(self):
        self.sent = False

    def receive(self, timeout, limit=1000):
        if self.sent:
            return super().receive(timeout, limit)
        self.sent = True
        status = {"time": "2026-01-01T00:00:00", "manager_state": "idle"}
        return [("QS_Info", {"time": 1.0, "msg": {"status": status}}), ("QS_Console", {"time": 1.0, "msg": "hi\n"})]


@pytest.mark.parametrize("max_age, kept", [(1.5, True), (0.0, False)])
def test_published_status_is_kept_unless_turned_off(redis_port, max_age, kept):
    store = RedisStore(
        RedisSettings(url=f"redis://127.0.0.1:{redis_port}/0"), prefix=f"published_test_{time.time_ns()}"
    )
    ingester = Ingester(store, OneStatusSubscriber, lease_seconds=0.5, status_max_age=max_age)
    ingester.start()
    try:
        console = store.key("console", "stream")
        wait_for(lambda: store.run(lambda r: r.xlen(console)) == 1, 30, "the console message")
        published = store.run(lambda r: r.get(store.key("status", "published")))
        assert (published is not None) is kept
        for _ in range(10):  # and the ingester keeps leading: nothing failed
            assert ingester.is_leader
            time.sleep(0.05)
    finally:
        ingester.stop()


def test_a_leader_that_lost_its_lease_appends_nothing(redis_port):
    """A leader cut off from Redis may send a batch that arrives after another took over: the
    batch is refused whole, so no old message lands after the new leader's."""
    store = RedisStore(RedisSettings(url=f"redis://127.0.0.1:{redis_port}/0"), prefix=f"stale_test_{time.time_ns()}")
    stale = Ingester(store, SilentSubscriber, lease_seconds=0.5)
    keys = stale.keys
    status = {"time": "2026-01-01T00:00:00", "manager_state": "idle"}
    batch = [("QS_Console", {"time": 1.0, "msg": "old\n"}), ("QS_Info", {"time": 1.0, "msg": {"status": status}})]
    store.run(lambda r: r.set(keys.leader, stale.identity))
    stale._append(batch)  # while it leads
    assert store.run(lambda r: (r.xlen(keys.console), r.xlen(keys.info))) == (1, 1)
    store.run(lambda r: r.set(keys.leader, "another-worker"))
    with pytest.raises(LeaseLost):
        stale._append(batch)
    assert store.run(lambda r: (r.xlen(keys.console), r.xlen(keys.info))) == (1, 1)


def test_a_worker_that_fails_to_subscribe_does_not_lead(redis_port):
    """If opening the subscription fails, the worker must not believe it leads (its notifier
    would deliver beside the real leader's), and it lets the lease go for another worker."""
    store = RedisStore(RedisSettings(url=f"redis://127.0.0.1:{redis_port}/0"), prefix=f"failing_test_{time.time_ns()}")
    attempts = []

    class FailingSubscriber(SilentSubscriber):
        def open(self):
            attempts.append(failing.is_leader)
            raise OSError("no subscription")

    failing = Ingester(store, FailingSubscriber, lease_seconds=1)
    failing.start()
    try:
        wait_for(lambda: len(attempts) >= 2, 30, "two attempts to subscribe")
        failing.stop()
        assert attempts[:2] == [False, False]
        assert not failing.is_leader
    finally:
        failing.stop()


def test_lease_renewals_and_batches_send_lua_by_its_digest(tmp_path):
    """Each lease renewal and ingest batch runs its Lua script with EVALSHA: the source goes to
    Redis once (SCRIPT LOAD), not with every call."""
    process, port = start_redis(tmp_path / "redis")
    try:
        store = RedisStore(RedisSettings(url=f"redis://127.0.0.1:{port}/0"))
        ingester = Ingester(store, SilentSubscriber, lease_seconds=0.5)
        assert ingester._acquire()
        batch = [("QS_Console", {"time": 1.0, "msg": "hi\n"})]
        for _ in range(3):
            assert ingester._renew()
            ingester._append(batch)
        ingester._release()
        ConsoleLog(store).update("")
        stats = store.run(lambda r: r.info("commandstats"))
        assert "cmdstat_eval" not in stats
        assert stats["cmdstat_evalsha"]["calls"] >= 8
        assert stats["cmdstat_script|load"]["calls"] == 4  # renew, append, release, console
    finally:
        process.stop()


def test_no_module_sends_lua_source_with_every_call():
    package = Path(qs_gateway.__file__).parent
    for path in package.rglob("*.py"):
        assert ".eval(" not in path.read_text(), f"{path} sends a Lua script with EVAL: use redis_store.script"
