"""Reading the console output kept in Redis, the same from every worker and host.

The cursor a polling client keeps (``last_msg_uid``) is the Redis stream id of the last message
it received: unique, monotonic and known to every worker, unlike the per-process uuids of
bluesky-httpserver. ``"ALL"`` returns every retained message; ``""``, an unknown or a trimmed id
returns no message but the current id, which becomes the client's cursor.

The console is never behind a status a client could have seen. RE Manager queues its console
lines and its statuses for publishing in one queue, so a line printed before a status was
computed is published before that status; but a worker may have *fetched* that status
(REQ/REP) while the line was still on its way through the ingest. So each read first waits, up
to :data:`CATCH_UP_SECONDS`, until the ingest has appended a published status at least as new as
the newest status any worker fetched: normally a few milliseconds, and only right after a status
changed. It does not wait when no status was published lately (RE Manager's publishing or the
ingest is off: nothing would come).
"""

from __future__ import annotations

import threading
import time

import orjson

from ..redis_store import RedisStore, script
from .keys import StreamKeys
from .render import ConsoleText

# A client cursor before any message: what a client receives while the stream is empty.
START = "0-0"

# At most this long a read waits for the ingest (see the module's note); then it answers with
# what is there. The ingest appends within milliseconds, and RE Manager publishes its status
# at least once a second.
CATCH_UP_SECONDS = 2.0
# Each wait for the info stream's next entry: well under the store's socket timeout (0.5 s).
_WAIT_MS = 200

# Lua: nil when the console holds everything RE Manager printed before the newest fetched
# status, else the info stream's newest id (the ingest appends the info and console entries
# of a batch, and the published status, in one step). KEYS: published status, status floor,
# info stream; a published status is "time|json", the floor "generation|time".
_BEHIND = """
local function behind(published_key, floor_key, info_key)
  local published = redis.call('GET', published_key)
  local floor = redis.call('GET', floor_key)
  local floor_time = floor and string.match(floor, '^[^|]*|(.*)$')
  if not published or not floor_time or string.match(published, '^[^|]*') >= floor_time then return nil end
  local newest = redis.call('XREVRANGE', info_key, '+', '-', 'COUNT', 1)
  return newest[1] and newest[1][1] or '0-0'
end
"""

_CATCH_UP = script(_BEHIND + "return behind(KEYS[1], KEYS[2], KEYS[3]) or ''")

# KEYS: console stream, then _BEHIND's; ARGV: cursor, START, '1' to answer {info id} if behind.
_UPDATE = script(
    _BEHIND
    + """
if ARGV[3] == '1' then
  local info_id = behind(KEYS[2], KEYS[3], KEYS[4])
  if info_id then return {info_id} end
end
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local newest_id = newest[1] and newest[1][1] or ARGV[2]
local cursor = ARGV[1]
if cursor == 'ALL' or cursor == ARGV[2] then
  return {newest_id, redis.call('XRANGE', KEYS[1], '-', '+')}
end
if not string.match(cursor, '^%d+%-%d+$') then return {newest_id, {}} end
local ok, found = pcall(redis.call, 'XRANGE', KEYS[1], cursor, cursor)
if not ok or #found == 0 then return {newest_id, {}} end
return {newest_id, redis.call('XRANGE', KEYS[1], '(' .. cursor, '+')}
"""
)


def _data(entries: list) -> list[bytes]:
    datas = []
    for _, fields in entries:
        # fields is a flat [name, value, ...] list when it comes from a script
        pairs = dict(zip(fields[::2], fields[1::2], strict=True)) if isinstance(fields, list) else fields
        if b"data" in pairs:
            datas.append(pairs[b"data"])
    return datas


class ConsoleLog:
    def __init__(self, store: RedisStore, *, max_lines: int = 2000) -> None:
        self.store = store
        keys = StreamKeys.of(store)
        self.key = keys.console
        self._info_key = keys.info
        self._caught_up_keys = [keys.published_status, keys.status_floor, keys.info]
        self.max_lines = max_lines
        self._lock = threading.Lock()
        self._text = ConsoleText(max_lines)
        self._text_position: str | None = None

    def update(self, last_msg_uid: str) -> bytes:
        """The body of ``/api/console_output_update``: messages after the client's cursor."""
        keys = [self.key, *self._caught_up_keys]
        found = self.store.run(lambda r: _UPDATE(keys=keys, args=[last_msg_uid, START, "1"], client=r))
        if len(found) == 1:  # behind: wait, then answer with what is there
            self._catch_up(found[0])
            found = self.store.run(lambda r: _UPDATE(keys=keys, args=[last_msg_uid, START, "0"], client=r))
        newest_id, entries = found
        return b"".join(
            (
                b'{"last_msg_uid":',
                orjson.dumps(newest_id.decode() if isinstance(newest_id, bytes) else newest_id),
                b',"console_output_msgs":[',
                b",".join(_data(entries)),
                b'],"success":true,"msg":""}',
            )
        )

    def _catch_up(self, info_id: bytes | str | None = None) -> None:
        """Waits until the console holds what RE Manager printed before the newest fetched
        status, at most :data:`CATCH_UP_SECONDS` (see the module's note). ``info_id``: the info
        stream's newest id when a check just found the console behind."""
        deadline = time.monotonic() + CATCH_UP_SECONDS
        if info_id is None:
            info_id = self.store.run(lambda r: _CATCH_UP(keys=self._caught_up_keys, client=r))
        while info_id and (left := deadline - time.monotonic()) > 0:
            self._next_info(info_id, max(1, min(int(left * 1000), _WAIT_MS)))
            info_id = self.store.run(lambda r: _CATCH_UP(keys=self._caught_up_keys, client=r))

    def _next_info(self, after: bytes | str, wait_ms: int) -> None:
        """Returns when the ingest appends to the info stream after ``after``, or after ``wait_ms``."""
        self.store.run(lambda r: r.xread({self._info_key: after}, count=1, block=wait_ms))

    def uid(self) -> str:
        self._catch_up()
        newest = self.store.run(lambda r: r.xrevrange(self.key, count=1))
        return newest[0][0].decode() if newest else START

    def text(self, nlines: int | None) -> tuple[str, str]:
        """The last ``nlines`` rendered lines and the id of the newest message they include.

        Each process renders incrementally from where it stopped; the rendering is a function
        of the stream, so every worker shows the same text.
        """
        self._catch_up()
        with self._lock:
            position = self._text_position
            if position is not None:
                entries = self.store.run(
                    lambda r: (
                        r.pipeline(transaction=False)
                        .xrange(self.key, min=position, max=position)
                        .xrange(self.key, min=f"({position}", max="+")
                        .execute()
                    )
                )
                still_retained, entries = entries
                if not still_retained and position != START:
                    position = None  # trimmed away while nobody asked: render the retained part anew
            if position is None:
                self._text = ConsoleText(self.max_lines)
                entries = self.store.run(lambda r: r.xrange(self.key, min="-", max="+"))
                position = START
            for entry_id, fields in entries:
                message = orjson.loads(fields[b"data"])
                self._text.add(str(message.get("msg", "")))
                position = entry_id.decode()
            self._text_position = position
            return self._text.text(nlines), position
