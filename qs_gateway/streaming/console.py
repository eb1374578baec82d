"""Reading the console output kept in Redis, the same from every worker and host.

The cursor a polling client keeps (``last_msg_uid``) is the Redis stream id of the last message
it received: unique, monotonic and known to every worker, unlike the per-process uuids of
bluesky-httpserver. ``"ALL"`` returns every retained message; ``""``, an unknown or a trimmed id
returns no message but the current id, which becomes the client's cursor.
"""

from __future__ import annotations

import threading

import orjson

from ..redis_store import RedisStore, script
from .keys import StreamKeys
from .render import ConsoleText

# A client cursor before any message: what a client receives while the stream is empty.
START = "0-0"

_UPDATE = script("""
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
""")


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
        self.key = StreamKeys.of(store).console
        self.max_lines = max_lines
        self._lock = threading.Lock()
        self._text = ConsoleText(max_lines)
        self._text_position: str | None = None

    def update(self, last_msg_uid: str) -> bytes:
        """The body of ``/api/console_output_update``: messages after the client's cursor."""
        newest_id, entries = self.store.run(lambda r: _UPDATE(keys=[self.key], args=[last_msg_uid, START], client=r))
        return b"".join(
            (
                b'{"last_msg_uid":',
                orjson.dumps(newest_id.decode() if isinstance(newest_id, bytes) else newest_id),
                b',"console_output_msgs":[',
                b",".join(_data(entries)),
                b'],"success":true,"msg":""}',
            )
        )

    def uid(self) -> str:
        newest = self.store.run(lambda r: r.xrevrange(self.key, count=1))
        return newest[0][0].decode() if newest else START

    def text(self, nlines: int | None) -> tuple[str, str]:
        """The last ``nlines`` rendered lines and the id of the newest message they include.

        Each process renders incrementally from where it stopped; the rendering is a function
        of the stream, so every worker shows the same text.
        """
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
