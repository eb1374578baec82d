"""Every Redis connection of the gateway is made here, from :class:`RedisSettings`.

Redis is either one server (``redis_url``) or the master that a set of Sentinels names
(``redis_sentinels`` and ``redis_service_name``; the URL then gives only the scheme, user,
password and database). Sentinel mode is redis-py's own Sentinel client: each new connection
asks the Sentinels for the current master, and a connection to a master that has been demoted is
dropped (redis-py turns the READONLY answer into a connection error), so after a failover the
next connection reaches the new master. ``rediss://`` means TLS, to Redis and to the Sentinels,
checked against ``redis_tls_ca_file`` (or the system's CAs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel

if TYPE_CHECKING:  # the type only: the config package itself depends on the store
    from .config.redis import RedisSettings


def _tls(settings: RedisSettings) -> dict[str, Any]:
    if not settings.url.startswith("rediss://"):
        return {}
    options: dict[str, Any] = {"ssl": True}
    if settings.tls_ca_file:
        options["ssl_ca_certs"] = settings.tls_ca_file
    return options


def _retry() -> Retry:
    # One more try at once, for a kept connection that Redis closed (a restart, an idle timeout).
    # How long to go on trying is the store's cool-down's decision, not redis-py's (whose own
    # default since 6.0 is ten tries with back-off, seconds per request while Redis is away).
    return Retry(NoBackoff(), 1)


def sentinel_of(settings: RedisSettings, timeout: float) -> Sentinel:
    """redis-py's Sentinel client for these Sentinels (passwords and TLS included)."""
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": _retry(),
        **_tls(settings),
    }
    if settings.sentinel_password:
        options["password"] = settings.sentinel_password
    return Sentinel(list(settings.sentinels), sentinel_kwargs=options)


def redis_client(settings: RedisSettings, *, timeout: float, connect_timeout: float | None = None) -> redis.Redis:
    """A client of the gateway's Redis (of the current master, with Sentinels).

    ``timeout`` bounds each command's wait for its answer, ``connect_timeout`` (default: the
    same) each connection attempt.
    """
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": connect_timeout if connect_timeout is not None else timeout,
        "health_check_interval": 30,
        "retry": _retry(),
    }
    if settings.password:
        options["password"] = settings.password  # a password in the URL wins
    if not settings.sentinels:
        tls = {name: value for name, value in _tls(settings).items() if name != "ssl"}  # the URL says so
        return redis.Redis.from_url(settings.url, **options, **tls)
    from_url = parse_url(settings.url)
    for server_address in ("host", "port", "path", "connection_class"):
        from_url.pop(server_address, None)  # the Sentinels say where the master is
    return sentinel_of(settings, options["socket_connect_timeout"]).master_for(
        settings.service_name, redis_class=redis.Redis, **{**options, **from_url, **_tls(settings)}
    )
