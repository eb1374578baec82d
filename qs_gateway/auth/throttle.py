"""Throttling of guesses: failed logins per user name and per client address, failed API-key and
token checks per client address.

Failures are counted by the ``limits`` library in moving windows kept in the gateway's Redis, so
every worker and host counts together. A budget has tiers, e.g. ``5/minute;30/hour``: five
failures in a minute make the next attempt wait until the oldest of them is a minute old; thirty
in an hour, until the oldest is an hour old. The wait grows with persistence and always ends
(nothing is locked for good). Only failures count, and an attempt refused with 429 is not tried,
so it does not count either. A successful login forgives its user name's failures (not its
address's: one valid account must not reset an attacker's budget).

Logins need Redis anyway: without it they are refused (503). Credential checks go on without it,
counted per worker process, so single-user mode keeps working while Redis is away.

A worker asks Redis before checking an API key or token only from an address it has itself seen
fail within the budget's longest window; other requests pay nothing. So an address that spent
its budget on other workers gets at most one check per request thread of a worker (and hosts)
before that worker refuses it too.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter, RateLimiter

from ..exceptions import TooManyRequests
from ..redis_store import RedisStore, StoreUnavailable

T = TypeVar("T")

TOO_MANY_LOGINS = "Too many failed logins; try again in {seconds} s"
TOO_MANY_CHECKS = "Too many failed credential checks from this address; try again in {seconds} s"
WATCHED_ADDRESSES_MAX = 100_000  # past this a worker forgets whom it watches (and starts over)


@dataclass(frozen=True)
class Budget:
    """The failures one kind of identity may have, in tiers."""

    name: str
    tiers: tuple[RateLimitItem, ...]

    @classmethod
    def of(cls, name: str, text: str) -> Budget:
        return cls(name, tuple(parse_many(text)) if text else ())

    @property
    def longest_window(self) -> float:
        return max((tier.get_expiry() for tier in self.tiers), default=0)


def _opaque(text: str) -> str:
    """User names are counted under a digest: no names in Redis keys, none too long."""
    return hashlib.sha256(text.strip().casefold().encode()).hexdigest()[:32]


class Throttle:
    def __init__(
        self,
        store: RedisStore,
        *,
        login_per_user: str,
        login_per_address: str,
        credentials_per_address: str,
    ) -> None:
        self.store = store
        self.login_user = Budget.of("login-user", login_per_user)
        self.login_address = Budget.of("login-address", login_per_address)
        self.credentials = Budget.of("credentials", credentials_per_address)
        self._lock = threading.Lock()
        self._shared: tuple[int, RateLimiter] | None = None
        self._local: tuple[int, RateLimiter] | None = None
        self._watched: dict[str, float] = {}  # address -> until when this worker asks Redis first

    # -- the limiters, made in the process that uses them (after gunicorn forked) ----------------

    def _limiter(self, slot: str, make: Callable[[], RateLimiter]) -> RateLimiter:
        made = getattr(self, slot)
        if made is None or made[0] != os.getpid():
            with self._lock:
                made = getattr(self, slot)
                if made is None or made[0] != os.getpid():
                    made = (os.getpid(), make())
                    setattr(self, slot, made)
        return made[1]

    def _shared_limiter(self) -> RateLimiter:
        def make() -> RateLimiter:
            storage = RedisStorage(
                self.store.settings.url,
                connection_pool=self.store.client.connection_pool,
                key_prefix=self.store.key("throttle"),
            )
            return MovingWindowRateLimiter(storage)

        return self._limiter("_shared", make)

    def _local_limiter(self) -> RateLimiter:
        return self._limiter("_local", lambda: MovingWindowRateLimiter(MemoryStorage()))

    def _run(self, operation: Callable[[RateLimiter], T], *, fail_open: bool) -> T:
        try:
            return self.store.run(lambda _: operation(self._shared_limiter()))
        except StoreUnavailable:
            if not fail_open:
                raise
            return operation(self._local_limiter())

    # -- counting ------------------------------------------------------------------------------

    def _wait(self, budget: Budget, identity: str, *, fail_open: bool) -> float:
        """Seconds until ``identity`` may try again (0: now)."""

        def wait(limiter: RateLimiter) -> float:
            longest = 0.0
            for tier in budget.tiers:
                stats = limiter.get_window_stats(tier, budget.name, identity)
                if stats.remaining <= 0:
                    longest = max(longest, stats.reset_time - time.time())
            return longest

        return self._run(wait, fail_open=fail_open) if budget.tiers else 0.0

    def _failed(self, budget: Budget, identity: str, *, fail_open: bool) -> None:
        def hit(limiter: RateLimiter) -> None:
            for tier in budget.tiers:
                limiter.hit(tier, budget.name, identity)

        if budget.tiers:
            self._run(hit, fail_open=fail_open)

    @staticmethod
    def _refuse(message: str, seconds: float) -> TooManyRequests:
        seconds = max(1, math.ceil(seconds))
        return TooManyRequests(message.format(seconds=seconds), seconds)

    # -- logins (Redis required) ---------------------------------------------------------------

    def before_login(self, username: str | None, address: str | None) -> None:
        """TooManyRequests if the user name or the address has spent its budget."""
        waits = [self._wait(self.login_user, _opaque(username), fail_open=False) if username else 0.0]
        if address:
            waits.append(self._wait(self.login_address, address, fail_open=False))
        if max(waits) > 0:
            raise self._refuse(TOO_MANY_LOGINS, max(waits))

    def login_failed(self, username: str | None, address: str | None) -> None:
        if username:
            self._failed(self.login_user, _opaque(username), fail_open=False)
        if address:
            self._failed(self.login_address, address, fail_open=False)

    def login_succeeded(self, username: str) -> None:
        def clear(limiter: RateLimiter) -> None:
            for tier in self.login_user.tiers:
                limiter.clear(tier, self.login_user.name, _opaque(username))

        self._run(clear, fail_open=False)

    # -- API keys and tokens (per worker while Redis is away) -----------------------------------

    def watching(self, address: str) -> bool:
        until = self._watched.get(address)
        if until is None:
            return False
        if until < time.monotonic():
            self._watched.pop(address, None)
            return False
        return True

    def before_credentials(self, address: str | None) -> None:
        """TooManyRequests if an address this worker saw fail has spent its budget."""
        if address and self.watching(address):
            wait = self._wait(self.credentials, address, fail_open=True)
            if wait > 0:
                raise self._refuse(TOO_MANY_CHECKS, wait)

    def credentials_failed(self, address: str | None) -> None:
        if not address or not self.credentials.tiers:
            return
        if len(self._watched) >= WATCHED_ADDRESSES_MAX:
            self._watched = {}
        self._watched[address] = time.monotonic() + self.credentials.longest_window
        self._failed(self.credentials, address, fail_open=True)
