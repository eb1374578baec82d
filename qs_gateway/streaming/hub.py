"""The streams of one worker: opening them, feeding them from Redis, and checking their grants.

* :meth:`StreamHub.open` takes a slot (at most ``max_streams`` per worker, else
  :class:`TooManyStreams`, answered 503 before any response starts), registers the stream and
  reads what it missed (its backlog) from Redis. A stream that resumes after an id gets every
  entry after it, none twice and none left out, whatever arrives meanwhile.
* One reader thread per worker follows the Redis streams that have readers (a blocking XREAD)
  and hands each batch to the fan-out (:mod:`.fanout`), which writes it to every connection.
* One guard thread checks the grant of every open stream again every ``recheck_seconds`` (each
  distinct grant once): a deleted key, an expired or revoked token ends its streams.
* One login thread runs the checks of credentials that clients send on a stream already handed
  over (a websocket's first message): they ask Redis, and neither the fan-out nor a request
  thread may wait for that.

No thread is started and no connection made before the first stream is opened (so never before
gunicorn forks).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import redis

from ..redis_connect import redis_client
from ..redis_store import StoreUnavailable
from .fanout import Fanout
from .keys import format_id, parse_id
from .stream import Admission, Encoder, Entry, Grant, Sink, Stream, StreamClosed, WireProtocol
from .wire import CLOSE_GOING_AWAY, CLOSE_INVALID_CREDENTIALS

if TYPE_CHECKING:
    from ..config.redis import RedisSettings

logger = logging.getLogger(__name__)

__all__ = ["RECHECK_SECONDS", "Sink", "Stream", "StreamClosed", "StreamHub", "TooManyStreams"]

RECHECK_SECONDS = 2.0  # how often the credentials of open streams are checked again


class TooManyStreams(Exception):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"this worker already serves its limit of {limit} open streams")


class StreamHub:
    def __init__(
        self,
        redis_url: RedisSettings | str,
        *,
        max_streams: int,
        queue_length: int,
        heartbeat_seconds: float = 15.0,
        block_seconds: float = 1.0,
        recheck_seconds: float = RECHECK_SECONDS,
    ) -> None:
        self.redis_url = redis_url
        self.max_streams = max_streams
        self.queue_length = queue_length
        self.block_ms = int(block_seconds * 1000)
        self.recheck_seconds = recheck_seconds
        self.fanout = Fanout(queue_length=queue_length, heartbeat_seconds=heartbeat_seconds, on_finished=self._finished)
        self._lock = threading.Lock()
        self._streams: set[Stream] = set()
        self._reader: threading.Thread | None = None
        self._guard: threading.Thread | None = None
        self._client: redis.Redis | None = None
        self._shutting_down = threading.Event()
        self._logins = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qs-gateway-logins")  # no thread yet

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def _redis(self) -> redis.Redis:
        if self._client is None:
            # its own connections: a blocking XREAD must not wait behind (or hold up) other calls
            self._client = redis_client(self.redis_url, timeout=self.block_ms / 1000 + 5, connect_timeout=2)
        return self._client

    def open(
        self, key: str, after: str | None, encode: Encoder, on_close: Callable[[], None] | None = None,
        look_back_ms: int = 0,
    ) -> Stream:  # fmt: skip
        """A stream on Redis stream ``key``: the entries after id ``after``, or from now on
        (with the entries of the last ``look_back_ms`` before now, by Redis's clock, which made
        the entries' ids).

        Its bytes wait in the fan-out until :meth:`attach` says where they go.
        """
        if self._shutting_down.is_set():
            raise StreamClosed()
        client = self._redis()
        if after is None:
            try:
                after = self._now_id(client, key, look_back_ms)
            except redis.RedisError as exc:
                raise self._unavailable(exc) from exc
        stream = Stream(key, encode, parse_id(after), on_close=on_close)
        with self._lock:
            if len(self._streams) >= self.max_streams:
                raise TooManyStreams(self.max_streams)
            self._streams.add(stream)
        # Registered first (live entries are held for it), then the backlog: nothing falls between.
        self.fanout.add(stream)
        self._start_threads()
        try:
            # the newest entries if more were missed than a stream may hold: the oldest are lost
            missed = client.xrevrange(key, max="+", min=f"({format_id(stream.last_id)}", count=self.queue_length)
        except redis.RedisError as exc:
            self.fanout.drop(stream)
            raise self._unavailable(exc) from exc
        self.fanout.backlog(stream, _entries(reversed(missed)))
        return stream

    @staticmethod
    def _now_id(client: redis.Redis, key: str, look_back_ms: int) -> str:
        if look_back_ms > 0:
            seconds, micros = client.time()
            return f"{max(seconds * 1000 + micros // 1000 - look_back_ms, 0)}-0"
        newest = client.xrevrange(key, count=1)
        return newest[0][0].decode() if newest else "0-0"

    def attach(
        self,
        stream: Stream,
        target: socket.socket | Sink,
        protocol: WireProtocol,
        head: bytes = b"",
        grant: Grant | None = None,
        admission: Admission | None = None,
    ) -> None:
        """Serve ``stream`` on a taken connection (or a sink), checked again by ``grant``; with an
        ``admission``, nothing of the stream is sent before :meth:`admit`."""
        stream.grant = grant
        self.fanout.attach(stream, target, protocol, head, admission)

    def admit(self, stream: Stream, grant: Grant) -> None:
        """The client of a stream attached with an admission logged in: serve it, checked by ``grant``."""
        stream.grant = grant
        self.fanout.admit(stream)

    def check_login(self, check: Callable[[], None]) -> None:
        """Run ``check`` (it ends with :meth:`admit` or :meth:`end`) on the login thread, in turn."""
        try:
            self._logins.submit(check)
        except RuntimeError:  # shutting down: the stream is ended anyway
            pass

    def release(self, stream: Stream) -> None:
        self.fanout.drop(stream)

    def end(self, stream: Stream, code: int, reason: str) -> None:
        self.fanout.end(stream, code, reason)

    def shutdown(self) -> None:
        """The worker is stopping: end every stream now, and open none."""
        if self._shutting_down.is_set():
            return
        self._shutting_down.set()
        self._logins.shutdown(wait=False, cancel_futures=True)
        if self._streams:
            # briefly: the clients are told before the process goes (they reconnect elsewhere)
            self.fanout.shutdown(CLOSE_GOING_AWAY, "The server is shutting down").wait(1.0)

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        return StoreUnavailable(f"Redis at {self.redis_url} did not answer: {exc}")

    def _finished(self, stream: Stream) -> None:
        with self._lock:
            self._streams.discard(stream)
        if stream.on_close is not None:
            stream.on_close()

    def _start_threads(self) -> None:
        with self._lock:
            if self._reader is None or not self._reader.is_alive():
                self._reader = threading.Thread(target=self._read, name="qs-gateway-streams", daemon=True)
                self._reader.start()
            if self._guard is None:
                self._guard = threading.Thread(target=self._check_grants, name="qs-gateway-grants", daemon=True)
                self._guard.start()

    def _read(self) -> None:
        client = self._redis()
        positions: dict[str, str] = {}
        while not self._shutting_down.is_set():
            with self._lock:
                if not self._streams:
                    self._reader = None
                    return
                keys = {s.key for s in self._streams}
                for key in positions.keys() - keys:
                    del positions[key]
                for key in keys - positions.keys():
                    # start where the earliest stream on this key starts
                    positions[key] = format_id(min(s.last_id for s in self._streams if s.key == key))
            try:
                answer = client.xread(positions, block=self.block_ms)
            except redis.RedisError as exc:
                logger.warning("Reading the console/status streams from Redis failed: %s", exc)
                self._shutting_down.wait(1.0)
                continue
            for raw_key, raw_entries in answer or ():
                key = raw_key.decode()
                entries = _entries(raw_entries)
                if raw_entries:
                    positions[key] = raw_entries[-1][0].decode()
                if entries:
                    self.fanout.entries(key, entries)

    def _check_grants(self) -> None:
        while not self._shutting_down.wait(self.recheck_seconds):
            with self._lock:
                granted = [s for s in self._streams if s.grant is not None]
            by_grant: dict[object, list[Stream]] = {}
            for stream in granted:
                by_grant.setdefault(stream.grant.key, []).append(stream)
            for streams in by_grant.values():
                try:
                    allowed = streams[0].grant.allowed()
                except Exception:
                    logger.exception("Checking the credentials of open streams failed; they stay open")
                    continue
                if not allowed:
                    for stream in streams:
                        self.fanout.end(stream, CLOSE_INVALID_CREDENTIALS, "The credentials are no longer valid")


def _entries(raw: Iterable) -> list[Entry]:
    return [(entry_id.decode(), fields[b"data"]) for entry_id, fields in raw if b"data" in fields]
