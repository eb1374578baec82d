"""Ingest: one subscriber to RE Manager's info channel among all workers and hosts.

Every worker runs an :class:`Ingester` thread, but only the holder of a lease in Redis
subscribes. The holder renews the lease several times per lease period; if it dies, the lease
expires and another worker takes over within about one lease period. A worker that shuts down
releases its lease at once.

The leader appends each console message to a bounded Redis stream, each info message (status)
to another, and keeps the latest published status under a key that expires when RE Manager
stops publishing (it publishes at least once a second).

Messages RE Manager publishes while no one subscribes (between a leader's death and the
takeover) are lost: PUB/SUB keeps nothing for absent subscribers.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from ..redis_store import RedisStore, StoreUnavailable, script
from ..transport.subscriber import CONSOLE_TOPIC, INFO_TOPIC, Subscriber
from .keys import StreamKeys

logger = logging.getLogger(__name__)

_RENEW = script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
""")
_RELEASE = script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""")
# Appends a batch only while the caller holds the lease, in one step: a leader cut off from
# Redis whose writes arrive after another took over must not add old messages after the new
# leader's. KEYS: lease, console stream, info stream, published status. ARGV: identity, console
# and info lengths, the status's expiry in ms (0: none) and entry, then (topic, data) pairs.
_APPEND = script("""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
for i = 6, #ARGV, 2 do
  if ARGV[i] == 'c' then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'data', ARGV[i + 1])
  else
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'data', ARGV[i + 1])
  end
end
if ARGV[4] ~= '0' then redis.call('SET', KEYS[4], ARGV[5], 'PX', ARGV[4]) end
return 1
""")


class LeaseLost(Exception):
    """Another worker holds the ingest lease now: this one's batch was not appended."""


class Ingester:
    def __init__(
        self,
        store: RedisStore,
        subscriber_factory: Callable[[], Subscriber],
        *,
        lease_seconds: float = 2.0,
        console_length: int = 10_000,
        info_length: int = 1_000,
        status_max_age: float = 1.5,
        on_leadership: Callable[[], None] | None = None,
        on_status: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.keys = StreamKeys.of(store)
        self.subscriber_factory = subscriber_factory
        self.lease_ms = int(lease_seconds * 1000)
        self.renew_every = lease_seconds / 4
        self.console_length = console_length
        self.info_length = info_length
        self.status_max_age_ms = int(status_max_age * 1000)
        self.on_leadership = on_leadership
        self.on_status = on_status  # called after statuses were appended (notifications derive from them)
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.is_leader = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="qs-gateway-ingest", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # -- the lease -----------------------------------------------------------------------------

    def _acquire(self) -> bool:
        return bool(self.store.run(lambda r: r.set(self.keys.leader, self.identity, nx=True, px=self.lease_ms)))

    def _renew(self) -> bool:
        args = [self.identity, self.lease_ms]
        return bool(self.store.run(lambda r: _RENEW(keys=[self.keys.leader], args=args, client=r)))

    def _release(self) -> None:
        try:
            self.store.run(lambda r: _RELEASE(keys=[self.keys.leader], args=[self.identity], client=r))
        except StoreUnavailable:
            pass

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._acquire():
                    self._lead()
            except StoreUnavailable:
                pass  # logged by the store; try again
            except Exception:
                logger.exception("Ingest failed; trying again")
            self._stop.wait(self.renew_every)

    # -- leading -------------------------------------------------------------------------------

    def _lead(self) -> None:
        subscriber = self.subscriber_factory()
        subscribed = False
        try:
            subscriber.open()
            subscribed = True
            # Only now: a worker that failed to subscribe must not believe it leads (its
            # notifier would deliver beside the real leader's).
            logger.info("This worker (%s) now subscribes to RE Manager's console and status", self.identity)
            self.is_leader = True
            if self.on_leadership is not None:
                self.on_leadership()
            renewed_at = time.monotonic()
            while not self._stop.is_set():
                messages = subscriber.receive(timeout=min(0.2, self.renew_every))
                if messages:
                    try:
                        self._append(messages)
                    except LeaseLost:
                        logger.warning("Lost the ingest lease; another worker subscribes now")
                        return
                    except StoreUnavailable:
                        raise
                    except Exception:
                        # Redis refused this batch (out of memory, say): it is lost, but the
                        # next one may pass, and another worker could do no better.
                        logger.exception("Redis refused %d published messages", len(messages))
                if time.monotonic() - renewed_at >= self.renew_every:
                    if not self._renew():
                        logger.warning("Lost the ingest lease; another worker subscribes now")
                        return
                    renewed_at = time.monotonic()
        finally:
            self.is_leader = False
            subscriber.close()
            if self._stop.is_set() or not subscribed:
                self._release()  # another worker may subscribe at once

    def _append(self, messages: list[tuple[str, Any]]) -> None:
        keys = self.keys
        pairs: list[bytes | str] = []
        latest_status = None
        for topic, message in messages:
            if not isinstance(message, dict) or topic not in (CONSOLE_TOPIC, INFO_TOPIC):
                continue
            pairs += ["c" if topic == CONSOLE_TOPIC else "i", orjson.dumps(message, option=orjson.OPT_NON_STR_KEYS)]
            payload = message.get("msg")
            if topic == INFO_TOPIC and isinstance(payload, dict) and isinstance(payload.get("status"), dict):
                latest_status = payload["status"]
        status_ms, status_entry = 0, b""
        if latest_status is not None and self.status_max_age_ms > 0:  # 0: never served
            status_ms = self.status_max_age_ms
            status_entry = f"{latest_status.get('time', '')}|".encode() + orjson.dumps(latest_status)
        lease_keys = (keys.leader, keys.console, keys.info, keys.published_status)
        lengths = (self.identity, self.console_length, self.info_length, status_ms, status_entry)
        if not pairs and not status_ms:
            return
        appended = self.store.run(lambda r: _APPEND(keys=lease_keys, args=[*lengths, *pairs], client=r))
        if appended == -1:
            raise LeaseLost()
        if latest_status is not None and self.on_status is not None:
            self.on_status()
