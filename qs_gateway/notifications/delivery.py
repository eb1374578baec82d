"""Delivery of the events stream to one target, through the target's own Redis consumer group.

Each target has a consumer group on the events stream: its own cursor and its own list of
pending (delivered to a worker, not yet acknowledged) entries, so a target that answers slowly
or fails delays no other, and a retry for one target never resends to another. Only the ingest
leader delivers, one entry at a time per target, so each target receives the events in the
order they happened.

An entry is acknowledged (``XACK``) once it was delivered, or failed for good (after
``retries``, or at once for an answer that retrying cannot change, such as 401). A worker that
dies leaves its entry pending; the next leader takes it over with ``XAUTOCLAIM`` once it has
been idle longer than a delivery attempt can take (while a worker retries, it keeps its
entries fresh), and delivers it before anything newer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import redis

from ..redis_store import script
from .sending import Answer, post
from .settings import Target
from .store import NotificationStore

logger = logging.getLogger(__name__)

FIRST_BACKOFF = 1.0  # seconds before the first retry; doubled for each further one
MAX_BACKOFF = 60.0
CLAIM_MARGIN = 5.0  # seconds an entry must be idle beyond a target's timeout to be taken over

# Refresh an entry's idle time, but only if this consumer still holds it.
_TOUCH = script("""
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if pending[1] == nil or pending[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
""")

Sender = Callable[[Target, Mapping[str, Any], int], Answer]


def backoff(retry: int) -> float:
    return min(FIRST_BACKOFF * 2 ** (retry - 1), MAX_BACKOFF)


class TargetDelivery:
    def __init__(
        self,
        target: Target,
        notifications: NotificationStore,
        consumer: str,
        stop: threading.Event,
        still_leading: Callable[[], bool],
        send: Sender = post,
    ) -> None:
        self.target = target
        self.notifications = notifications
        self.store = notifications.store
        self.stream = notifications.keys.events
        self.group = f"target:{target.key}"
        self.consumer = consumer
        self.stop = stop
        self.still_leading = still_leading
        self.send = send
        self.claim_idle_ms = int((target.timeout + CLAIM_MARGIN) * 1000)

    def ensure_group(self) -> None:
        """Create the group at the end of the stream: a new target gets events from now on."""
        try:
            self.store.run(lambda r: r.xgroup_create(self.stream, self.group, id="$", mkstream=True))
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # -- which entry next ----------------------------------------------------------------------

    def _read(self, start: str) -> tuple[str, dict | None] | None:
        reply = self.store.run(lambda r: r.xreadgroup(self.group, self.consumer, {self.stream: start}, count=1))
        entries = reply[0][1] if reply else []
        if not entries:
            return None
        entry_id, fields = entries[0]
        return entry_id.decode(), fields or None  # None: trimmed from the stream meanwhile

    def _take_over_abandoned(self) -> bool:
        """Claim entries a dead consumer left pending; True if there are some still waiting
        (not idle long enough yet), which must go first."""
        reply = self.store.run(
            lambda r: r.xautoclaim(self.stream, self.group, self.consumer, self.claim_idle_ms, "0-0", count=10)
        )
        claimed = reply[1] if len(reply) > 1 else []
        if claimed:
            logger.info("Took over %d notification(s) for %s left pending", len(claimed), self.target.name)
            return False
        summary = self.store.run(lambda r: r.xpending(self.stream, self.group))
        return bool(summary and summary.get("pending"))

    def next_entry(self) -> tuple[str, dict | None] | None:
        """Own pending entries first (oldest first), then abandoned ones, then new ones."""
        mine = self._read("0")
        if mine is not None:
            return mine
        if self._take_over_abandoned():
            return None  # wait until they can be taken over, to keep the order
        mine = self._read("0")
        if mine is not None:
            return mine
        return self._read(">")

    # -- delivering ----------------------------------------------------------------------------

    def _touch(self, entry_id: str) -> bool:
        args = [self.group, self.consumer, entry_id]
        return bool(self.store.run(lambda r: _TOUCH(keys=[self.stream], args=args, client=r)))

    def _ack(self, entry_id: str) -> None:
        self.store.run(lambda r: r.xack(self.stream, self.group, entry_id))

    def _wait(self, seconds: float, entry_id: str) -> bool:
        """Wait before a retry, keeping the entry ours; False if this worker must let it go."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.stop.wait(min(left, 1.0)) or not self.still_leading() or not self._touch(entry_id):
                return False
        return True

    def handle_one(self) -> bool:
        """Deliver (or skip) the next entry; False if there was none to handle now."""
        found = self.next_entry()
        if found is None:
            return False
        entry_id, fields = found
        if fields is None or b"event" not in fields:
            logger.warning("Event %s for %s left the events stream unsent", entry_id, self.target.name)
            self._ack(entry_id)
            return True
        event = orjson.loads(fields[b"event"])
        if self.target.wants(event.get("type")):
            if not self.deliver(entry_id, event):
                return True  # left pending, for this worker or the next leader
        self._ack(entry_id)
        return True

    def deliver(self, entry_id: str, event: Mapping[str, Any]) -> bool:
        """POST until delivered or given up; False if the entry must stay pending."""
        attempts = self.target.retries + 1
        for attempt in range(1, attempts + 1):
            if not self._touch(entry_id):
                return False  # another worker took it over
            started = time.monotonic()
            answer = self.send(self.target, event, attempt)
            final = answer.delivered or not answer.worth_retrying or attempt == attempts
            outcome = "delivered" if answer.delivered else ("failed" if final else "retrying")
            self._log(event, attempt, outcome, answer, time.monotonic() - started)
            if final:
                if outcome == "failed":
                    logger.warning(
                        "Notification %s to %s failed after %d attempt(s): %s",
                        event.get("id"), self.target.name, attempt, answer.error or answer.status,
                    )  # fmt: skip
                return True
            if not self._wait(backoff(attempt), entry_id):
                return False
        return True

    def _log(self, event: Mapping[str, Any], attempt: int, outcome: str, answer: Answer, seconds: float) -> None:
        self.notifications.log(
            {
                "time": round(time.time(), 3),
                "event_id": event.get("id"),
                "event_type": event.get("type"),
                "target": self.target.name,
                "url": self.target.shown_url,
                "attempt": attempt,
                "outcome": outcome,
                "status": answer.status,
                "answer": answer.text,
                "error": answer.error,
                "seconds": round(seconds, 3),
                "worker": self.consumer,
            }
        )
