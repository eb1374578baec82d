"""Redis, as the place where workers and hosts share state, with a clear failure mode.

Every call goes through :meth:`RedisStore.run`. If Redis does not answer, the call raises
:class:`StoreUnavailable` and, for a short cool-down, later calls fail at once instead of each
waiting for a socket timeout. Callers decide whether they can do without Redis (the status cache
falls back to process memory) or must refuse (``503``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from .redact import redact_url
from .redis_fast import FastReader

logger = logging.getLogger(__name__)

T = TypeVar("T")


class StoreUnavailable(Exception):
    pass


class RedisStore:
    def __init__(self, url: str, prefix: str = "qs_gateway", *, timeout: float = 0.5, cooldown: float = 1.0) -> None:
        self.url = url
        self.display_url = redact_url(url)  # for messages and logs: no password
        self.prefix = prefix
        self.timeout = timeout
        self.cooldown = cooldown
        self._client: redis.Redis | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._failed_at: float | None = None
        self.fast = FastReader(url, timeout)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    @property
    def client(self) -> redis.Redis:
        pid = os.getpid()
        if self._pid != pid:
            with self._lock:
                if self._pid != pid:
                    self._client = redis.Redis.from_url(
                        self.url,
                        socket_timeout=self.timeout,
                        socket_connect_timeout=self.timeout,
                        health_check_interval=30,
                    )
                    self._pid = pid
        return self._client

    @property
    def available(self) -> bool:
        failed_at = self._failed_at
        return failed_at is None or time.monotonic() - failed_at >= self.cooldown

    def run(self, operation: Callable[[redis.Redis], T]) -> T:
        if not self.available:
            raise StoreUnavailable(f"Redis at {self.display_url} did not answer")
        try:
            result = operation(self.client)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            if self._failed_at is None:
                logger.warning("Redis at %s is unavailable: %s", self.display_url, exc)
            self._failed_at = time.monotonic()
            raise StoreUnavailable(f"Redis at {self.display_url} did not answer: {exc}") from exc
        if self._failed_at is not None:
            logger.warning("Redis at %s answers again", self.display_url)
            self._failed_at = None
        return result

    def mget(self, keys: list[str]) -> list[bytes | None]:
        """MGET for the hottest path: on this thread's own lean connection (see redis_fast)."""
        if self.fast.usable:
            return self.run(lambda _: self.fast.mget(keys))
        return self.run(lambda r: r.mget(keys))

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
