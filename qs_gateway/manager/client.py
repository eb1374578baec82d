"""The RE Manager client the blueprints use: methods, caching and read-your-writes; no HTTP.

Everything it does to a method follows from the method's row in :mod:`.methods`:

* :meth:`ManagerClient.call` sends one method. Reads may be repeated by the transport, writes
  never; after a write the shared status is invalidated, and the cached replies the write may
  have changed are dropped.
* :meth:`ManagerClient.status` serves the status from the shared cache (``status_ttl``),
  fetching it once for all concurrent callers on a miss.
* :meth:`ManagerClient.read` serves a read whose row names a guard (queue, history, plans,
  devices, runs, lock info) from a per-process cache keyed by that ``*_uid`` of the current
  status, as RE Manager's own clients do. Cached bodies are kept already serialised.
* :meth:`ManagerClient.refuse` answers a request the gateway refuses itself in the method's own
  refusal shape (:mod:`.refusals`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..transport import CircuitOpen, PoolExhausted, ProtocolError, RequestTimeout, SocketPool, Timeouts
from .methods import Timeout, method
from .refusals import needs_status, refusal_reply
from .reply import Reply
from .singleflight import SingleFlight
from .status_cache import StatusCache


@dataclass(frozen=True)
class TimeoutPolicy:
    default: Timeouts = Timeouts()
    bulk_receive: float | None = None  # receive timeout of the BULK class (default: as the others)
    per_method: Mapping[str, float] = field(default_factory=dict)  # receive timeout overrides

    def for_method(self, name: str) -> Timeouts:
        receive = self.per_method.get(name)
        if receive is None and method(name).timeout is Timeout.BULK:
            receive = self.bulk_receive
        if receive is None:
            return self.default
        return Timeouts(send=self.default.send, receive=receive)


@dataclass
class _UidEntry:
    uid: str
    reply: Reply


def _freeze(params: Mapping[str, Any]) -> Hashable:
    return tuple(sorted((k, v if isinstance(v, Hashable) else repr(v)) for k, v in params.items()))


class ManagerClient:
    def __init__(self, transport: SocketPool, status_cache: StatusCache, timeouts: TimeoutPolicy) -> None:
        self.transport = transport
        self.status_cache = status_cache
        self.timeouts = timeouts
        self._flights = SingleFlight()
        self._by_uid: dict[Hashable, _UidEntry] = {}
        # Request threads add entries while a write's ``_forget`` walks them: iterating the
        # dict during an insert raises "changed size during iteration".
        self._by_uid_lock = threading.Lock()
        status_cache.refresh = self._refresh_status
        # The Reply of the status body last served, for every request the same status answers:
        # it keeps what was worked out of the body (the ETag's uid, the gzipped body).
        self._served_status: Reply | None = None

    # -- plain requests ----------------------------------------------------------------------

    def call(self, name: str, params: Mapping[str, Any] | None = None) -> Reply:
        row = method(name)
        message = {"method": name, "params": dict(params or {})}
        try:
            data = self.transport.request(message, timeouts=self.timeouts.for_method(name), repeatable=row.reads)
        finally:
            if not row.reads:
                # Also after a timeout: the write may have been carried out.
                self.status_cache.invalidate()
                self._forget(row.changes)
        return Reply(data)

    def _forget(self, guards: tuple[str, ...]) -> None:
        """Drop the cached replies guarded by ``guards``: a new uid would replace them anyway,
        but until then they only hold memory."""
        if not guards:
            return
        with self._by_uid_lock:
            for key in [key for key in self._by_uid if method(key[0]).guard in guards]:
                del self._by_uid[key]

    # -- status ------------------------------------------------------------------------------

    def status(self, *, reload: bool = False) -> Reply:
        body, generation = self.status_cache.lookup()
        if body is not None and not reload:
            served = self._served_status
            if served is not None and served.holds(body):
                return served
            served = self._served_status = Reply(body=body)
            return served
        if reload:
            return self._fetch_status(generation)
        return self._flights.do(("status", generation), lambda: self._fetch_status(generation))

    def _refresh_status(self, generation: int) -> None:
        """The status cache's fetch ahead of its status's end (requests of this worker that need
        the status meanwhile share the fetch)."""
        self._flights.do(("status", generation), lambda: self._fetch_status(generation))

    def _fetch_status(self, generation: int) -> Reply:
        reply = self.call("status")
        self.status_cache.store_status(reply.body, generation, str(reply.get("time", "")))
        return reply

    # -- reads -------------------------------------------------------------------------------

    def read(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        *,
        reload: bool = False,
        variant: str | None = None,
        transform: Callable[[Reply], Reply] | None = None,
    ) -> Reply:
        """A read, from the cache where its row names a guard and ``params`` hold no more than
        the caller's identity (other parameters, such as a lock key to check, go to RE Manager).

        ``variant``/``transform`` cache a derived reply (e.g. reduced plan descriptions)
        beside the raw one, under the same uid.
        """
        row = method(name)
        params = dict(params or {})
        if name == "status":
            reply = self.status(reload=reload)
        elif row.guard is None or not set(params) <= set(row.identity):
            reply = self.call(name, params)
        else:
            return self._cached(name, params, row.guard, reload, variant, transform)
        return transform(reply) if transform is not None else reply

    def _cached(
        self,
        name: str,
        params: dict[str, Any],
        guard: str,
        reload: bool,
        variant: str | None,
        transform: Callable[[Reply], Reply] | None,
    ) -> Reply:
        uid = self.status(reload=reload).get(guard)
        key = (name, _freeze(params), variant)
        entry = self._by_uid.get(key)
        if entry is not None and uid is not None and entry.uid == uid and not reload:
            return entry.reply

        def fetch() -> Reply:
            if transform is None:
                reply = self.call(name, params)
            else:
                reply = transform(self._cached(name, params, guard, False, None, None))
            fetched_uid = reply.get(guard)
            if reply.succeeded and fetched_uid is not None:
                # Kept as serialised bytes only: every hit sends them as they are, and the
                # garbage collector has no objects to walk (a 1,000-item queue is ~30,000).
                with self._by_uid_lock:
                    self._by_uid[key] = _UidEntry(fetched_uid, Reply(body=reply.body))
            return reply

        if reload:
            return fetch()
        return self._flights.do((key, uid), fetch)

    # -- refusals ----------------------------------------------------------------------------

    def refuse(
        self,
        name: str,
        params: Mapping[str, Any],
        reason: str,
        errors: Mapping[str, Any],
        item_reasons: Mapping[int, str] | None = None,
    ) -> Reply:
        """``name``'s refusal of ``params`` in RE Manager's own shape; nothing is sent."""
        refusal = method(name).refusal
        if refusal is None:
            raise ValueError(f"RE Manager method {name!r} has no refusal shape")
        status = None
        if needs_status(refusal):
            try:
                status = self.status().data
            except (RequestTimeout, CircuitOpen, PoolExhausted, ProtocolError):
                pass  # the refusal stands without RE Manager's state: those values stay null
        return Reply(refusal_reply(refusal, params, reason, errors, status, item_reasons))
