"""What notifications keep in Redis: the derivation state, the events stream, the delivery log.

The derivation state and the events it produced are written by one script, atomically: the
state moves on only together with its events, and only if the writer still holds the ingest
lease and read the state's current version (a worker that lost the lease while it worked
writes nothing). Each event is added to the stream only if its id was never produced before.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from ..redis_store import RedisStore, script
from .derive import Event, State

EVENTS_LENGTH = 10_000  # events kept in the stream: far more than any receiver lags behind
LOG_LENGTH = 1_000  # delivery log entries kept
PRODUCED_TTL_SECONDS = 7 * 24 * 3600  # how long an event id is remembered as produced

_COMMIT = script("""
if redis.call('GET', KEYS[3]) ~= ARGV[2] then return -1 end
local version = redis.call('HGET', KEYS[1], 'version') or ''
if version ~= ARGV[1] then return -2 end
local added = 0
for i = 4, #KEYS do
  local at = 6 + (i - 4) * 2
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[5]) then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'id', ARGV[at], 'event', ARGV[at + 1])
    added = added + 1
  end
end
redis.call('HSET', KEYS[1], 'version', (tonumber(version) or 0) + 1, 'state', ARGV[3])
return added
""")


class NotLeading(Exception):
    """The commit was refused: the lease moved, or another writer moved the state first."""


@dataclass(frozen=True)
class NotificationKeys:
    state: str  # hash {version, state}: the derivation state
    events: str  # stream of events {id, event}; one consumer group per target
    log: str  # list: the delivery log, newest first
    produced_prefix: str  # + event id: the event was produced (with a TTL)

    @classmethod
    def of(cls, store: RedisStore) -> "NotificationKeys":
        return cls(
            state=store.key("notify", "state"),
            events=store.key("notify", "events"),
            log=store.key("notify", "log"),
            produced_prefix=store.key("notify", "produced", ""),
        )


class NotificationStore:
    def __init__(self, store: RedisStore, lease_key: str) -> None:
        self.store = store
        self.keys = NotificationKeys.of(store)
        self.lease_key = lease_key

    # -- derivation ----------------------------------------------------------------------------

    def load_state(self) -> tuple[str, State | None]:
        """(version, state); version ``""`` and state ``None`` before the first status."""
        version, data = self.store.run(lambda r: r.hmget(self.keys.state, ["version", "state"]))
        if version is None or data is None:
            return "", None
        return version.decode(), State.from_json(data)

    def commit(self, version: str, holder: str, state: State, events: Iterable[Event]) -> str:
        """Store ``state`` and append the ``events`` not produced before; the new version."""
        events = list(events)
        keys = [self.keys.state, self.keys.events, self.lease_key]
        keys += [self.keys.produced_prefix + event.id for event in events]
        args: list[Any] = [version, holder, state.to_json(), EVENTS_LENGTH, PRODUCED_TTL_SECONDS]
        for event in events:
            args += [event.id, orjson.dumps(event.as_dict())]
        result = self.store.run(lambda r: _COMMIT(keys=keys, args=args, client=r))
        if result < 0:
            raise NotLeading("the ingest lease moved" if result == -1 else "the state moved on")
        return str((int(version) if version else 0) + 1)

    def now_ms(self) -> int:
        seconds, micros = self.store.run(lambda r: r.time())
        return seconds * 1000 + micros // 1000

    # -- delivery log --------------------------------------------------------------------------

    def log(self, entry: dict[str, Any]) -> None:
        data = orjson.dumps(entry)

        def write(r: Any) -> None:
            pipe = r.pipeline(transaction=True)
            pipe.lpush(self.keys.log, data)
            pipe.ltrim(self.keys.log, 0, LOG_LENGTH - 1)
            pipe.execute()

        self.store.run(write)

    def read_log(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` entries, newest first."""
        if limit <= 0:
            return []
        return [orjson.loads(item) for item in self.store.run(lambda r: r.lrange(self.keys.log, 0, limit - 1))]

    # -- events of requests (not derived from the status) ----------------------------------------

    def append(self, event: Event) -> None:
        """Add an event a request caused (a submission, a decision) to the events stream; the
        leader's delivery threads send it like the derived ones."""

        def add(r: Any) -> None:
            if r.set(self.keys.produced_prefix + event.id, "1", nx=True, ex=PRODUCED_TTL_SECONDS):
                r.xadd(
                    self.keys.events,
                    {"id": event.id, "event": orjson.dumps(event.as_dict())},
                    maxlen=EVENTS_LENGTH,
                    approximate=True,
                )

        self.store.run(add)
