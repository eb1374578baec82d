"""The RE Manager client the blueprints use: methods, caching and read-your-writes; no HTTP.

* :meth:`ManagerClient.call` sends one RE Manager method. Reads may be repeated by the transport,
  writes never; after a write the shared status cache is invalidated.
* :meth:`ManagerClient.status` serves the status from the shared cache (``status_ttl``), fetching
  it once for all concurrent callers on a miss.
* :meth:`ManagerClient.cached` serves queue, history, plans, devices, runs and lock info from a
  per-process cache keyed by the matching ``*_uid`` of the current status, as RE Manager's own
  clients do. Cached bodies are kept already serialised.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..transport import SocketPool, Timeouts
from .methods import is_read
from .reply import Reply
from .singleflight import SingleFlight
from .status_cache import StatusCache


@dataclass(frozen=True)
class TimeoutPolicy:
    default: Timeouts = Timeouts()
    per_method: Mapping[str, float] = field(default_factory=dict)  # receive timeout overrides

    def for_method(self, method: str) -> Timeouts:
        receive = self.per_method.get(method)
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

    # -- plain requests ----------------------------------------------------------------------

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Reply:
        reads = is_read(method)
        message = {"method": method, "params": dict(params or {})}
        try:
            data = self.transport.request(message, timeouts=self.timeouts.for_method(method), repeatable=reads)
        finally:
            if not reads:
                # Also after a timeout: the write may have been carried out.
                self.status_cache.invalidate()
        return Reply(data)

    # -- status ------------------------------------------------------------------------------

    def status(self, *, reload: bool = False) -> Reply:
        body, generation = self.status_cache.lookup()
        if body is not None and not reload:
            return Reply(body=body)
        if reload:
            return self._fetch_status(generation)
        return self._flights.do(("status", generation), lambda: self._fetch_status(generation))

    def _fetch_status(self, generation: int) -> Reply:
        reply = self.call("status")
        self.status_cache.store_status(reply.body, generation, str(reply.get("time", "")))
        return reply

    # -- uid-keyed reads ---------------------------------------------------------------------

    def cached(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        uid_field: str,
        reload: bool = False,
        variant: str | None = None,
        transform: Callable[[Reply], Reply] | None = None,
    ) -> Reply:
        """Return ``method``'s reply, fetched again only when the status's ``uid_field`` changed.

        ``variant``/``transform`` cache a derived reply (e.g. reduced plan descriptions)
        beside the raw one, under the same uid.
        """
        params = dict(params or {})
        uid = self.status(reload=reload).get(uid_field)
        key = (method, _freeze(params), variant)
        entry = self._by_uid.get(key)
        if entry is not None and uid is not None and entry.uid == uid and not reload:
            return entry.reply

        def fetch() -> Reply:
            if transform is None:
                reply = self.call(method, params)
            else:
                reply = transform(self.cached(method, params, uid_field=uid_field))
            fetched_uid = reply.get(uid_field)
            if reply.succeeded and fetched_uid is not None:
                # Kept as serialised bytes only: every hit sends them as they are, and the
                # garbage collector has no objects to walk (a 1,000-item queue is ~30,000).
                self._by_uid[key] = _UidEntry(fetched_uid, Reply(body=reply.body))
            return reply

        if reload:
            return fetch()
        return self._flights.do((key, uid), fetch)
