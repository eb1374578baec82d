"""The lean Redis reader of the status path, against real redis-server processes."""

from __future__ import annotations

import threading

import pytest
import redis

from qs_gateway.config.redis import RedisSettings
from qs_gateway.redis_fast import FastReader, pack
from qs_gateway.redis_store import RedisStore, StoreUnavailable
from qs_gateway.serving.stack import start_redis


@pytest.fixture
def private_redis(tmp_path):
    process, port = start_redis(tmp_path, extra_args=("--requirepass", "s3cret"))
    yield process, port
    process.stop()


def test_mget_with_password_and_database(private_redis):
    _, port = private_redis
    redis.Redis(port=port, password="s3cret", db=3).mset({"a": b"1", "b": b"x" * 100_000})
    reader = FastReader(f"redis://:s3cret@127.0.0.1:{port}/3", timeout=1)
    assert reader.mget(["a", "b", "missing"]) == [b"1", b"x" * 100_000, None]
    results = []
    threads = [threading.Thread(target=lambda: results.append(reader.mget(["a"]))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [[b"1"]] * 8  # each thread on its own connection
    with pytest.raises(redis.AuthenticationError):
        FastReader(f"redis://:wrong@127.0.0.1:{port}/3", timeout=1).mget(["a"])


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


def test_pack_is_the_wire_protocol():
    assert pack("MGET", "a", b"bc") == b"*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$2\r\nbc\r\n"
