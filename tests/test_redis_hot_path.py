"""The status path's own Redis connection per thread, against real redis-server processes (and
a fake one for answers Redis never gives)."""

from __future__ import annotations

import socket
import threading

import pytest
import redis
from redis.connection import Connection

from qs_gateway.config.redis import RedisSettings
from qs_gateway.manager.status_cache import CLAIM_IF_ENDING, INCREMENT_THEN_TIME_LEFT
from qs_gateway.redis_store import RedisStore, StoreUnavailable
from qs_gateway.serving.stack import start_redis

from .support import wait_for


@pytest.fixture
def private_redis(tmp_path):
    process, port = start_redis(tmp_path, extra_args=("--requirepass", "s3cret"))
    yield process, port
    process.stop()


def test_mget_with_password_and_database_one_connection_per_thread(private_redis, monkeypatch):
    _, port = private_redis
    admin = redis.Redis(port=port, password="s3cret", db=3)
    admin.mset({"a": b"1", "b": b"x" * 100_000})
    packing = []
    pack_command = Connection.pack_command
    monkeypatch.setattr(
        Connection, "pack_command", lambda self, *args: packing.append(args) or pack_command(self, *args)
    )
    store = RedisStore(RedisSettings(url=f"redis://:s3cret@127.0.0.1:{port}/3"))
    assert store.mget(["a", "b", "missing"]) == [b"1", b"x" * 100_000, None]
    assert store.mget(["a", "b", "missing"]) == [b"1", b"x" * 100_000, None]
    results = []
    counted = threading.Event()

    def read() -> None:
        results.append(store.mget(["a"]))
        counted.wait(30)  # alive, with its connection, until the connections are counted

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(results) == 8, 30, "the threads' reads")
        assert results == [[b"1"]] * 8
        assert [args[0] for args in packing] == ["MGET", "MGET"]  # each command packed once
        reading = [c for c in admin.client_list() if c["cmd"] == "mget"]
        assert len(reading) == 9  # each thread on its own connection
    finally:
        counted.set()
        for thread in threads:
            thread.join()
    with pytest.raises(redis.AuthenticationError):
        RedisStore(RedisSettings(url=f"redis://:wrong@127.0.0.1:{port}/3")).hot_path.mget(["a"])


def test_a_marked_read_keeps_the_marker_alive_at_least_as_long_as_asked(private_redis):
    """The status lease's marker (see manager/status_cache.py): set before the read in the same
    round trip, never shortened, and the script loaded again after Redis forgot it."""
    _, port = private_redis
    admin = redis.Redis(port=port, password="s3cret")
    admin.set("k", b"v")
    store = RedisStore(RedisSettings(url=f"redis://:s3cret@127.0.0.1:{port}/0"))
    assert store.mget(["k", "missing"], ("marker", 5000)) == [b"v", None]
    assert 4000 < admin.pttl("marker") <= 5000
    assert store.mget(["k"], ("marker", 100)) == [b"v"]
    assert admin.pttl("marker") > 4000  # a shorter mark does not shorten a longer one
    admin.set("marker", b"1", px=50)
    assert store.mget(["k"], ("marker", 5000)) == [b"v"]
    assert admin.pttl("marker") > 4000  # one that would end sooner is set anew
    admin.script_flush()
    assert store.mget(["k"], ("other", 5000)) == [b"v"]
    assert admin.pttl("other") > 4000
    assert store.mget(["k"], ("other", 5000)) == [b"v"]


def test_a_writes_increment_answers_the_markers_time_left(private_redis):
    """A write's step in the status cache: the generation incremented and the lease marker's
    time left, in one round trip, also after Redis forgot the script."""
    _, port = private_redis
    admin = redis.Redis(port=port, password="s3cret")
    store = RedisStore(RedisSettings(url=f"redis://:s3cret@127.0.0.1:{port}/0"))
    keys = ("generation", "marker")
    assert store.hot_script(INCREMENT_THEN_TIME_LEFT, keys) == -2  # no lease held anywhere
    admin.set("marker", b"1", px=5000)
    assert 4000 < store.hot_script(INCREMENT_THEN_TIME_LEFT, keys) <= 5000
    admin.script_flush()
    admin.persist("marker")
    assert store.hot_script(INCREMENT_THEN_TIME_LEFT, keys) == -1
    assert admin.get("generation") == b"3"


def test_one_caller_claims_the_fetch_ahead_of_a_status_ending(private_redis):
    """The status cache's fetch ahead: claimed only when the status is missing or within the
    last stretch (here 1,000 ms), by one caller, and never for a key without expiry."""
    _, port = private_redis
    admin = redis.Redis(port=port, password="s3cret")
    store = RedisStore(RedisSettings(url=f"redis://:s3cret@127.0.0.1:{port}/0"))

    def claim(claim_key: str) -> int:
        return store.hot_script(CLAIM_IF_ENDING, ("status", claim_key), (1000,))

    admin.set("status", b"s", px=60_000)
    assert claim("a") == 0  # far from its end
    admin.set("status", b"s", px=500)
    assert claim("a") == 1
    assert 0 < admin.pttl("a") <= 1000
    assert claim("a") == 0  # claimed already
    admin.delete("status")
    assert claim("b") == 1  # missing
    admin.set("status", b"s")
    assert claim("c") == 0  # no expiry: not a gateway's


def test_a_dropped_connection_is_replaced(private_redis):
    process, port = private_redis
    url = f"redis://:s3cret@127.0.0.1:{port}/0"
    store = RedisStore(RedisSettings(url=url), cooldown=0.0)
    redis.Redis(port=port, password="s3cret").set("k", b"v")
    assert store.mget(["k"]) == [b"v"]
    redis.Redis(port=port, password="s3cret").client_kill_filter(_type="normal", skipme=True)
    assert store.mget(["k"]) == [b"v"]  # the dead connection is replaced and the read sent again
    process.stop()
    with pytest.raises(StoreUnavailable):
        store.mget(["k"])


class CorruptingProxy:
    """Forwards to a real Redis, but answers the first MGET itself with bytes that are not the
    protocol; counts the connections made through it."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.corrupt = True
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.connections += 1
            server = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        with source:
            while data := self._recv(source):
                if from_client and self.corrupt and b"MGET" in data:
                    self.corrupt = False
                    source.sendall(b"!not the protocol\r\n")
                    continue
                sink.sendall(data)
            sink.close()

    @staticmethod
    def _recv(sock: socket.socket) -> bytes:
        try:
            return sock.recv(65536)
        except OSError:
            return b""

    def close(self) -> None:
        self.listener.close()


def test_an_invalid_answer_drops_the_connection_and_the_next_call_reconnects(private_redis):
    _, port = private_redis
    redis.Redis(port=port, password="s3cret").set("k", b"v")
    proxy = CorruptingProxy(port)
    try:
        store = RedisStore(RedisSettings(url=f"redis://:s3cret@127.0.0.1:{proxy.port}/0"), cooldown=0.0)
        with pytest.raises(StoreUnavailable, match="could not be read"):  # Redis unavailable: not a 500
            store.mget(["k"])
        assert store.mget(["k"]) == [b"v"]
        assert proxy.connections == 2
    finally:
        proxy.close()
