"""The notifier of one worker: derives events and delivers them while the worker leads ingest.

Every worker runs the threads; they work only while their worker holds the ingest lease (see
:mod:`qs_gateway.streaming.ingest`), so exactly one worker of a gateway, on whichever host,
derives and delivers at a time. The deriver reads the statuses the leader appended to the info
stream, from the cursor kept with the derivation state, so a new leader continues exactly where
the last one stopped. It is woken by the ingester whenever a status was appended.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

import orjson

from ..config.notifications import Target
from ..manager import ManagerClient
from ..redis_store import StoreUnavailable
from ..streaming.keys import StreamKeys
from . import derive
from .delivery import TargetDelivery
from .store import NotificationStore, NotLeading

logger = logging.getLogger(__name__)

BATCH = 100  # statuses read from the stream at a time
IDLE_WAIT = 0.5  # seconds between looks when nothing woke a thread


class Leadership(Protocol):
    """What the notifier needs of the ingester."""

    identity: str
    is_leader: bool


class ManagerUnavailable(Exception):
    """RE Manager did not give what a derivation step needs; the step is tried again later."""


class Notifier:
    def __init__(
        self,
        notifications: NotificationStore,
        manager: ManagerClient,
        targets: Sequence[Target],
        ingest: Leadership,
        *,
        silence_seconds: float,
    ) -> None:
        self.notifications = notifications
        self.store = notifications.store
        self.info_stream = StreamKeys.of(self.store).info
        self.manager = manager
        self.ingest = ingest
        self.silence_ms = int(silence_seconds * 1000)
        self._stop = threading.Event()
        self._status_appended = threading.Event()
        self._events_added = [threading.Event() for _ in targets]
        self.deliveries = [
            TargetDelivery(target, notifications, ingest.identity, self._stop, self._leading) for target in targets
        ]
        self._threads: list[threading.Thread] = []

    def _leading(self) -> bool:
        return self.ingest.is_leader and not self._stop.is_set()

    # -- lifecycle -----------------------------------------------------------------------------

    def status_appended(self) -> None:
        """The ingester's hook: a status reached the info stream."""
        self._status_appended.set()

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        # Every target's group before this worker serves a request: an event a request appends
        # (a submission's) before the leader has made the groups would never reach the targets.
        # Without Redis now, the leader makes them when it begins to lead.
        for delivery in self.deliveries:
            try:
                delivery.ensure_group()
            except Exception as exc:  # noqa: BLE001 - a worker starts whatever Redis says
                logger.warning("Notifications: the group of %s waits for the leader: %s", delivery.group, exc)
        self._threads = [threading.Thread(target=self._derive_loop, name="qs-gateway-notify-derive", daemon=True)]
        for delivery, woken in zip(self.deliveries, self._events_added, strict=True):
            self._threads.append(
                threading.Thread(
                    target=self._delivery_loop, args=(delivery, woken), name="qs-gateway-notify-deliver", daemon=True
                )
            )
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the threads; a POST under way may hold its thread up to its target's timeout,
        but not this call longer than ``timeout`` (what it leaves pending, the next leader sends)."""
        self._stop.set()
        self._status_appended.set()
        for woken in self._events_added:
            woken.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        self._threads = []

    def _guarded(self, work: Callable[[], Any], what: str) -> Any:
        try:
            return work()
        except (StoreUnavailable, NotLeading, ManagerUnavailable) as exc:
            logger.debug("Notifications: %s postponed: %s", what, exc)
        except Exception:
            logger.exception("Notifications: %s failed; trying again", what)
        self._stop.wait(IDLE_WAIT)
        return None

    # -- deriving ------------------------------------------------------------------------------

    def _derive_loop(self) -> None:
        watching_since: int | None = None
        while not self._stop.is_set():
            if not self.ingest.is_leader:
                watching_since = None
                self._stop.wait(IDLE_WAIT / 2)
                continue
            if watching_since is None:
                watching_since = self._guarded(self._begin_leading, "starting to lead")
                continue
            self._status_appended.clear()
            added = self._guarded(lambda since=watching_since: self.derive_pending(since), "deriving events")
            if added:
                for woken in self._events_added:
                    woken.set()
            self._status_appended.wait(IDLE_WAIT)

    def _begin_leading(self) -> int:
        # Groups first: events produced before a target's group exists would never reach it.
        for delivery in self.deliveries:
            delivery.ensure_group()
        return self.notifications.now_ms()

    def _history(self) -> tuple[list, Any]:
        reply = self._ask("history_get")
        items = reply.get("items")
        if not isinstance(items, list):
            raise ManagerUnavailable(f"history_get gave no items: {reply.get('msg')}")
        return [item for item in items if isinstance(item, dict)], reply.get("plan_history_uid")

    def _running_item(self) -> dict:
        item = self._ask("queue_get").get("running_item")
        return item if isinstance(item, dict) else {}

    def _ask(self, method: str) -> Any:
        try:
            reply = self.manager.call(method)
        except Exception as exc:  # timeouts, the breaker, the pool: all mean "not now"
            raise ManagerUnavailable(f"{method}: {type(exc).__name__}: {exc}") from exc
        if not reply.succeeded:
            raise ManagerUnavailable(f"{method} refused: {reply.get('msg')}")
        return reply

    def _statuses_after(self, cursor: str | None) -> list[tuple[str, dict | None]]:
        if cursor is None:  # the first status ever: start from the newest
            entries = self.store.run(lambda r: r.xrevrange(self.info_stream, count=1))
        else:
            entries = self.store.run(lambda r: r.xrange(self.info_stream, min=f"({cursor}", count=BATCH))
        found = []
        for entry_id, fields in entries:
            try:
                message = orjson.loads(fields.get(b"data", b"{}"))
            except orjson.JSONDecodeError:
                message = None  # not a status: skipped, never a reason to stop
            payload = message.get("msg") if isinstance(message, dict) else None
            status = payload.get("status") if isinstance(payload, dict) else None
            found.append((entry_id.decode(), status if isinstance(status, dict) else None))
        return found

    def derive_pending(self, watching_since: int) -> int:
        """Derive and store the events of every status not yet taken into account, then
        whether RE Manager has gone silent; the number of events added."""
        holder = self.ingest.identity
        version, state = self.notifications.load_state()
        added = 0
        if state is None:
            for entry_id, status in self._statuses_after(None):
                if status is not None:
                    state = derive.initial(entry_id, status, *self._history())
                    version = self.notifications.commit(version, holder, state, [])
            if state is None:
                return 0
        while batch := self._statuses_after(state.cursor):
            for entry_id, status in batch:
                if status is None:
                    state, events = replace(state, cursor=entry_id), []
                else:
                    history, history_uid = self._history() if derive.needs_history(state, status) else (None, None)
                    running = self._running_item() if derive.needs_running_item(state, status) else None
                    state, events = derive.step(state, entry_id, status, history, history_uid, running)
                version = self.notifications.commit(version, holder, state, events)
                added += len(events)
            if len(batch) < BATCH:
                break
        state, events = derive.silence(state, self.notifications.now_ms(), watching_since, self.silence_ms)
        if events:
            self.notifications.commit(version, holder, state, events)
            added += len(events)
        return added

    # -- delivering ----------------------------------------------------------------------------

    def _delivery_loop(self, delivery: TargetDelivery, woken: threading.Event) -> None:
        leading = False
        while not self._stop.is_set():
            if not self.ingest.is_leader:
                leading = False
                self._stop.wait(IDLE_WAIT / 2)
                continue
            if not leading:
                leading = self._guarded(lambda: delivery.ensure_group() or True, "starting to deliver") or False
                continue
            woken.clear()
            handled = self._guarded(delivery.handle_one, f"delivering to {delivery.target.name}")
            if handled is None:
                leading = False  # after an error, make sure of the group again (Redis may have lost it)
            elif not handled:
                woken.wait(IDLE_WAIT)
