"""Reaching Redis: the settings, TLS with a CA file, Sentinels, and writes that wait for a replica.

Against real redis-server processes: a TLS-only Redis, a master with a replica and a Sentinel.
The failover itself, under load, is tests/test_redis_failover.py.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from qs_gateway.config import ConfigError, load_settings
from qs_gateway.config.redis import RedisSettings
from qs_gateway.redis_connect import redis_client
from qs_gateway.redis_store import RedisStore, StoreUnavailable
from qs_gateway.serving.sentinels import SentinelGroup, start_master, start_replica, start_sentinels
from qs_gateway.serving.stack import ManagedProcess, RedisTls, start_redis

from .support import self_signed_certificate

PASSWORD = "redis-secret"
SENTINEL_PASSWORD = "sentinel-secret"


def test_settings_of_sentinels_and_tls(tmp_path):
    settings = load_settings(
        environ={
            "QS_GATEWAY_REDIS_URL": "rediss://:url-secret@ignored:1/2",
            "QS_GATEWAY_REDIS_SENTINELS": "10.0.0.1:26379, 10.0.0.2:26380 [fd00::3]:26381",
            "QS_GATEWAY_REDIS_SERVICE_NAME": "qs",
            "QS_GATEWAY_REDIS_SENTINEL_PASSWORD": "s",
            "QS_GATEWAY_REDIS_TLS_CA_FILE": "/etc/ssl/redis-ca.pem",
            "QS_GATEWAY_REDIS_WAIT_REPLICAS": "2",
        }
    ).redis
    assert settings.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("fd00::3", 26381))
    assert (settings.service_name, settings.sentinel_password, settings.wait_replicas) == ("qs", "s", 2)
    # what messages and logs say: where, never a password
    assert str(settings) == "rediss+sentinel://10.0.0.1:26379,10.0.0.2:26380,[fd00::3]:26381/qs"
    assert str(load_settings(environ={"QS_GATEWAY_REDIS_URL": "redis://:pw@h:1/0"}).redis) == "redis://:***@h:1/0"
    config = tmp_path / "config.yml"
    config.write_text("gateway:\n  redis_sentinels: [a:1, 'b:2']\n")
    assert load_settings(environ={"QSERVER_HTTP_SERVER_CONFIG": str(config)}).redis.sentinels == (("a", 1), ("b", 2))
    for wrong in ("a", "a:b", ":1", "a:70000"):
        with pytest.raises(ConfigError, match="QS_GATEWAY_REDIS_SENTINELS: expected host:port"):
            load_settings(environ={"QS_GATEWAY_REDIS_SENTINELS": wrong})


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> RedisTls:
    directory = tmp_path_factory.mktemp("redis-tls")
    cert, key = self_signed_certificate(directory)
    return RedisTls(cert, key, ca=cert)  # its own CA


def test_tls_with_a_ca_file(tls, tmp_path):
    process, port = start_redis(tmp_path, extra_args=("--requirepass", PASSWORD), tls=tls)
    try:
        settings = RedisSettings(url=f"rediss://127.0.0.1:{port}/0", password=PASSWORD, tls_ca_file=str(tls.ca))
        store = RedisStore(settings, "tls_test")
        store.run(lambda r: r.set("tls_test:k", b"v"))
        assert store.mget(["tls_test:k"]) == [b"v"]  # the status path's own connection: TLS as well
        # the stream hub's blocking reader is made the same way
        assert redis_client(settings, timeout=1).get("tls_test:k") == b"v"
        # a certificate the CA file does not vouch for is refused, as unavailable (503), not an error
        untrusting = RedisStore(RedisSettings(url=settings.url, password=PASSWORD), "tls_test")
        with pytest.raises(StoreUnavailable, match="certificate verify failed"):
            untrusting.run(lambda r: r.ping())
        with pytest.raises(StoreUnavailable, match="certificate verify failed"):
            RedisStore(untrusting.settings, "tls_test", cooldown=0).mget(["tls_test:k"])
        plain = RedisStore(RedisSettings(url=f"redis://127.0.0.1:{port}/0", password=PASSWORD), "tls_test")
        with pytest.raises(StoreUnavailable):
            plain.run(lambda r: r.ping())
    finally:
        process.stop()


@dataclass
class ReplicatedRedis:
    master: ManagedProcess
    master_port: int
    replica: ManagedProcess
    replica_port: int
    sentinels: SentinelGroup

    def settings(self, **options) -> RedisSettings:
        options = {
            "url": "redis:///0",
            "sentinels": tuple(("127.0.0.1", port) for port in self.sentinels.ports),
            "password": PASSWORD,
            "sentinel_password": SENTINEL_PASSWORD,
            **options,
        }
        return RedisSettings(**options)

    def stop(self) -> None:
        for process in (*self.sentinels.processes, self.replica, self.master):
            process.stop()


def replicated(workdir, tls: RedisTls | None = None) -> ReplicatedRedis:
    master, master_port = start_master(workdir / "master", password=PASSWORD, tls=tls)
    replica, replica_port = start_replica(workdir / "replica", master_port, password=PASSWORD, tls=tls)
    sentinels = start_sentinels(
        workdir / "sentinel",
        master_port,
        count=1,
        quorum=1,
        master_password=PASSWORD,
        password=SENTINEL_PASSWORD,
        tls=tls,
    )
    return ReplicatedRedis(master, master_port, replica, replica_port, sentinels)


@pytest.fixture(scope="module")
def replicated_redis(tmp_path_factory) -> Iterator[ReplicatedRedis]:
    cluster = replicated(tmp_path_factory.mktemp("replicated"))
    yield cluster
    cluster.stop()


def test_sentinels_name_the_master_for_every_client(replicated_redis):
    store = RedisStore(replicated_redis.settings(), "named")
    store.run(lambda r: r.set("named:k", b"v"))
    assert store.mget(["named:k"]) == [b"v"]  # the fast path finds the master through the Sentinels too
    master = redis.Redis(port=replicated_redis.master_port, password=PASSWORD)
    assert master.get("named:k") == b"v"
    blocking = redis_client(replicated_redis.settings(), timeout=2)
    assert blocking.xadd("named:stream", {"data": b"1"}) and blocking.xlen("named:stream") == 1
    wrong = RedisStore(replicated_redis.settings(sentinel_password="wrong"), "named")
    with pytest.raises(StoreUnavailable):
        wrong.run(lambda r: r.ping())


def test_durable_writes_wait_for_the_replica_and_go_on_without_it(replicated_redis, caplog):
    replica = redis.Redis(port=replicated_redis.replica_port, password=PASSWORD)
    store = RedisStore(replicated_redis.settings(wait_timeout=0.2), "durable")
    assert store.durable(lambda r: r.set("durable:first", b"1")) is True
    assert replica.get("durable:first") == b"1"  # there before the answer
    assert "replicas acknowledged" not in caplog.text

    replicated_redis.replica.signal_group(signal.SIGSTOP)  # a replica that does not answer
    try:
        with caplog.at_level(logging.WARNING, logger="qs_gateway.redis_store"):
            assert store.durable(lambda r: r.set("durable:second", b"2")) is True  # answered anyway
            assert store.durable(lambda r: r.set("durable:third", b"3")) is True
        warnings = [r.getMessage() for r in caplog.records if "replicas acknowledged" in r.getMessage()]
        assert len(warnings) == 1, warnings  # once: the next writes did not wait
        assert warnings[0].startswith("Only 0 of 1 Redis replicas acknowledged")
    finally:
        replicated_redis.replica.signal_group(signal.SIGCONT)
    assert redis.Redis(port=replicated_redis.master_port, password=PASSWORD).get("durable:third") == b"3"


def test_a_replica_answering_writes_is_unavailable_not_an_error(replicated_redis):
    # as a demoted master answers until redis-py notices: READONLY is a 503, not a 500
    store = RedisStore(
        RedisSettings(url=f"redis://:{PASSWORD}@127.0.0.1:{replicated_redis.replica_port}/0"), "readonly"
    )
    with pytest.raises(StoreUnavailable, match="read only replica"):
        store.run(lambda r: r.set("readonly:k", b"v"))


def test_sentinels_and_redis_over_tls(tls, tmp_path):
    cluster = replicated(tmp_path, tls=tls)
    try:
        settings = cluster.settings(tls_ca_file=str(tls.ca), url="rediss:///0")
        store = RedisStore(settings, "tls_sentinel")
        assert store.durable(lambda r: r.set("tls_sentinel:k", b"v")) is True
        assert store.run(lambda r: r.get("tls_sentinel:k")) == b"v"
    finally:
        cluster.stop()
