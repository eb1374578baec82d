"""Redis, as the place where workers and hosts share state, with a clear failure mode.

Every call goes through :meth:`RedisStore.run`. If Redis does not answer, the call raises
:class:`StoreUnavailable` and, for a short cool-down, later calls fail at once instead of each
waiting for a socket timeout. Callers decide whether they can do without Redis (the status cache
falls back to process memory) or must refuse (``503``).

With Sentinels, a failover looks the same from here: Redis is unavailable until the Sentinels
name the new master. Writes that must survive a failover (logins, sessions, API keys) go through
:meth:`RedisStore.durable`, which answers only once a replica has them, or once it has waited
``redis_wait_timeout`` for that in vain.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from redis.commands.core import Script

from .redis_connect import redis_client
from .redis_hot_path import HotPathReader

if TYPE_CHECKING:  # the type only: the config package itself depends on the store
    from .config.redis import RedisSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Answers of a Redis that cannot take the command now, though it is up: a replica without its
# master, a master without enough replicas for writes. (A replica's READONLY, a demoted master's,
# is redis-py's ReadOnlyError; LOADING is its BusyLoadingError, a ConnectionError.)
_NOT_NOW = ("MASTERDOWN", "NOREPLICAS", "TRYAGAIN")
UNWAITED_SECONDS = 10.0  # how long a worker writes without WAIT after no replica answered one


def script(source: str) -> Script:
    """A Lua script that Redis runs by its SHA1 (``EVALSHA``): the source goes to a Redis only
    once (redis-py loads it when Redis answers ``NOSCRIPT``, after a restart or a failover too),
    not with every call as ``EVAL`` sends it. Call it in :meth:`RedisStore.run` as
    ``script(keys=[...], args=[...], client=r)``."""
    return Script(None, source.encode())  # bytes: hashed without a client; each call names its own


class StoreUnavailable(Exception):
    pass


def _unavailable(exc: Exception) -> bool:
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError, OSError)):
        return True
    return isinstance(exc, redis.ResponseError) and str(exc).startswith(_NOT_NOW)


class RedisStore:
    def __init__(
        self,
        settings: RedisSettings,
        prefix: str | None = None,
        *,
        timeout: float = 0.5,
        cooldown: float = 1.0,
    ) -> None:
        self.settings = settings
        self.display_url = self.settings.display  # for messages and logs: no password
        self.prefix = self.settings.prefix if prefix is None else prefix
        self.timeout = timeout
        self.cooldown = cooldown
        self._client: redis.Redis | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._failed_at: float | None = None
        self._unwaited_until = 0.0
        self.hot_path = HotPathReader(lambda: self.client.connection_pool.make_connection(), timeout)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    @property
    def client(self) -> redis.Redis:
        pid = os.getpid()
        if self._pid != pid:
            with self._lock:
                if self._pid != pid:
                    # WAIT blocks for up to redis_wait_timeout: its answer must not time out first
                    waiting = self.settings.wait_timeout if self.waits_for_replicas else 0.0
                    self._client = redis_client(
                        self.settings, timeout=self.timeout + waiting, connect_timeout=self.timeout
                    )
                    self._pid = pid
        return self._client

    @property
    def waits_for_replicas(self) -> bool:
        return bool(self.settings.sentinels) and self.settings.wait_replicas > 0

    @property
    def available(self) -> bool:
        failed_at = self._failed_at
        return failed_at is None or time.monotonic() - failed_at >= self.cooldown

    def run(self, operation: Callable[[redis.Redis], T]) -> T:
        if not self.available:
            raise StoreUnavailable(f"Redis at {self.display_url} did not answer")
        try:
            result = operation(self.client)
        except Exception as exc:
            if not _unavailable(exc):
                raise
            if self._failed_at is None:
                logger.warning("Redis at %s is unavailable: %s", self.display_url, exc)
            self._failed_at = time.monotonic()
            raise StoreUnavailable(f"Redis at {self.display_url} did not answer: {exc}") from exc
        if self._failed_at is not None:
            logger.warning("Redis at %s answers again", self.display_url)
            self._failed_at = None
        return result

    def durable(self, operation: Callable[[redis.Redis], T]) -> T:
        """:meth:`run` a write that must survive a failover: with Sentinels, answer once
        ``redis_wait_replicas`` replicas have it, or after ``redis_wait_timeout``.

        Redis's ``WAIT`` covers the writes made on the connection it is sent on, and redis-py
        may have used others for ``operation``; so one more write (a counter) and the ``WAIT``
        go together on one connection: replicas apply writes in order, so one that has the
        counter has everything written before it. If too few replicas answer, the write is
        answered anyway and a warning logged: refusing would make every login depend on the
        replicas as well as on the master. This worker then writes without waiting for
        ``UNWAITED_SECONDS``, so a missing replica slows down one write, not every login.
        """
        result = self.run(operation)
        wanted = self.settings.wait_replicas
        if not self.waits_for_replicas or time.monotonic() < self._unwaited_until:
            return result
        timeout_ms = int(self.settings.wait_timeout * 1000)
        counter = self.key("durable_writes")

        def replicate(r: redis.Redis) -> int:
            return r.pipeline(transaction=False).incr(counter).wait(wanted, timeout_ms).execute()[1]

        acknowledged = self.run(replicate)
        if acknowledged < wanted:
            self._unwaited_until = time.monotonic() + UNWAITED_SECONDS
            logger.warning(
                "Only %d of %d Redis replicas acknowledged a login, session or API key write within %s s; "
                "it was answered anyway, and a failover now could lose it (no waiting for the next %s s)",
                acknowledged,
                wanted,
                self.settings.wait_timeout,
                UNWAITED_SECONDS,
            )
        return result

    def mget(self, keys: list[str], mark: tuple[str, int] | None = None) -> list[bytes | None]:
        """MGET for the hottest path: on this thread's own connection (see redis_hot_path). With
        ``mark`` (a key, milliseconds), ``SET key 1 PX milliseconds`` first, in the same round trip."""
        return self.run(lambda _: self.hot_path.mget(keys, mark))

    def hot_script(self, source: str, keys: tuple[str, ...], args: tuple[str | int, ...] = ()) -> Any:
        """A Lua script on the hottest paths: on this thread's own connection (see redis_hot_path)."""
        return self.run(lambda _: self.hot_path.script(source, keys, args))

    def ping(self) -> bool:
        try:
            return bool(self.run(lambda r: r.ping()))
        except StoreUnavailable:
            return False

    def close(self) -> None:
        with self._lock:
            if self._client is not None and self._pid == os.getpid():
                self._client.close()
            self._client = None
            self._pid = None
