"""Long-lived responses: Server-Sent Events and the console byte stream, and what websockets share.

A stream is opened in the view, before any response starts: a worker at its ``stream_limit``,
or a Redis that does not answer, is answered 503 with ``Retry-After`` like any request. The
view returns a response whose head goes through the app's hooks as usual; when gunicorn calls
it, the response takes the connection over (:mod:`qs_gateway.streaming.takeover`), writes the
head and hands the connection to the worker's fan-out thread, which serves it from then on. No
request thread waits on a stream. Where no connection can be taken (another server, the test
client), the response holds its thread and takes the stream's bytes from a sink.

Each open stream's credentials are checked again every few seconds (:class:`Grant`): a stream
whose key was deleted, or whose token expired or was revoked, ends.
"""

from __future__ import annotations

import email.utils
import functools
import json
import re
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from flask import Response, g, request

from ..auth import Credentials
from ..auth.authenticator import Authenticator
from ..exceptions import BadRequest, ServiceUnavailable, Unauthorized
from ..extensions import services
from ..redis_store import StoreUnavailable
from ..streaming.hub import TooManyStreams
from ..streaming.stream import Encoder, Entry, Sink, Stream, StreamClosed
from ..streaming.takeover import can_take, end_request, take
from ..streaming.wire import HttpStream, chunk

if TYPE_CHECKING:
    from .declare import Call

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
POLL_SECONDS = 1.0
CONSOLE_STREAM_LOOK_BACK_MS = 2000  # see console_byte_stream
SSE_CONNECTED = b": connected\n\n"  # sent with the head: the client sees the stream is open
SSE_HEARTBEAT = b": heartbeat\n\n"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade", "te", "trailer"}
_STREAM_ID = re.compile(r"(\d{1,20})(?:-(\d{1,20}))?")
_LARGEST_ID_PART = 2**64 - 2  # Redis cannot resume after its very largest id


@dataclass(frozen=True)
class Grant:
    """The credentials a stream was opened with, and the scope they must still have."""

    auth: Authenticator = field(compare=False, repr=False)
    credentials: Credentials
    scope: str

    @property
    def key(self) -> Hashable:
        return (self.credentials, self.scope)

    def allowed(self) -> bool:
        try:
            self.auth.require(self.auth.authenticate(self.credentials), frozenset({self.scope}))
        except Unauthorized:
            return False
        except StoreUnavailable:
            return True  # Redis is away for a moment: the stream is not the one to blame
        return True


def grant_of(credentials: Credentials, scope: str) -> Grant:
    return Grant(services().auth, credentials, scope)


def open_stream(key: str, kind: str, encode: Encoder, after: str | None = None, look_back_ms: int = 0) -> Stream:
    """Open a stream on Redis stream ``key``; ``kind`` names it in the open-streams metric."""
    metrics = services().metrics
    gauge = metrics.open_streams.labels(kind) if metrics is not None else None
    try:
        on_close = gauge.dec if gauge is not None else None
        stream = services().hub.open(key, after, encode, on_close=on_close, look_back_ms=look_back_ms)
    except TooManyStreams as exc:
        raise ServiceUnavailable(f"Too many open streams: {exc}", 5) from None
    except StreamClosed:
        raise ServiceUnavailable("The server is shutting down", 1) from None
    if gauge is not None:
        gauge.inc()
    return stream


def last_event_id() -> str | None:
    """Where an SSE client resumes: the ``Last-Event-ID`` header (sent by EventSource on
    reconnect) or the ``last_event_id`` query parameter (for a first connection)."""
    value = request.headers.get("Last-Event-ID") or request.args.get("last_event_id") or None
    if value is None:
        return None
    found = _STREAM_ID.fullmatch(value.strip())
    if found is None or any(int(part) > _LARGEST_ID_PART for part in found.groups() if part):
        shown = value if len(value) <= 64 else value[:63] + "…"
        raise BadRequest(f"Last-Event-ID must be the id of an event this stream sent (as 1700000000000-0): {shown!r}")
    return value.strip()


# -- encoders: entries -> bytes, one object per kind of stream, so each message is encoded once --


def _as_is(data: bytes) -> bytes:
    return data


@functools.cache
def sse_encoder(render: Callable[[bytes], bytes], chunked: bool) -> Encoder:
    def encode(entries: list[Entry]) -> bytes:
        events = b"".join(b"id: %s\ndata: %s\n\n" % (entry_id.encode(), render(data)) for entry_id, data in entries)
        return chunk(events) if chunked else events

    return encode


@functools.cache
def console_byte_encoder(chunked: bool) -> Encoder:
    """Each message as Python's ``json.dumps`` writes it, no separator (the byte format of
    bluesky-httpserver's ``/api/stream_console_output``, which its clients parse)."""

    def encode(entries: list[Entry]) -> bytes:
        messages = (orjson.loads(data) for _, data in entries)
        text = "".join(json.dumps({"time": m.get("time"), "msg": m.get("msg")}) for m in messages).encode()
        return chunk(text) if chunked else text

    return encode


# -- responses ---------------------------------------------------------------------------------


def _chunked() -> bool:
    return request.environ.get("SERVER_PROTOCOL") == "HTTP/1.1"


class _Handover(Response):
    """The head of a stream's response. Called by the server, it hands the stream over to the
    fan-out on the taken connection, or serves it from a sink in this thread."""

    def __init__(self, stream: Stream, protocol: HttpStream, first: bytes, mimetype: str, grant: Grant) -> None:
        super().__init__(iter(()), mimetype=mimetype, headers=STREAM_HEADERS)
        self._stream, self._protocol, self._first, self._grant = stream, protocol, first, grant
        self._hub = services().hub

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        hub, stream = self._hub, self._stream
        if environ.get("REQUEST_METHOD") == "HEAD":
            hub.release(stream)
            return super().__call__(environ, start_response)
        if can_take(environ):
            framing = "Transfer-Encoding: chunked\r\n" if self._protocol.chunked else ""
            head = response_head(self, environ, framing + "Connection: close")
            hub.attach(stream, take(environ), self._protocol, head + self._first, self._grant)
            end_request()
        sink = Sink(hub.queue_length)
        hub.attach(stream, sink, self._protocol, self._first, self._grant)
        self.response = _ThreadHeld(sink, lambda: hub.release(stream))
        return super().__call__(environ, start_response)


def response_head(response: Response, environ: dict, connection: str) -> bytes:
    """The status line and headers of ``response`` as the app's hooks left them, for a
    connection of ours: ``connection`` gives the hop-by-hop headers."""
    lines = [f"HTTP/1.1 {response.status}", f"Date: {email.utils.formatdate(usegmt=True)}"]
    for name, value in response.get_wsgi_headers(environ).items():
        if name.lower() not in _HOP_BY_HOP:
            lines.append(f"{name}: {value}")
    return ("\r\n".join((*lines, connection)) + "\r\n\r\n").encode("latin-1")


class _ThreadHeld:
    """The body of a stream served in its request thread: the sink's bytes as they come. The
    server closes it when the client leaves (or never reads it); that frees the stream."""

    def __init__(self, sink: Sink, release: Callable[[], None]) -> None:
        self._sink, self._release, self._started = sink, release, False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if not self._started:
            self._started = True
            return b""  # the server sends the head now
        while True:
            try:
                data = self._sink.take(POLL_SECONDS)
            except StreamClosed:
                raise StopIteration from None
            if data:
                return data

    def close(self) -> None:
        self._release()


def _serve(
    call: Call, key: str, kind: str, encoder: Callable[[bool], Encoder], first: bytes, mimetype: str,
    heartbeat: bytes | None = None, after: str | None = None, look_back_ms: int = 0,
) -> Response:  # fmt: skip
    chunked = can_take(request.environ) and _chunked()  # a connection of ours is framed by us
    protocol = HttpStream(chunked=chunked, heartbeat=heartbeat)
    stream = open_stream(key, kind, encoder(chunked), after, look_back_ms)
    grant = grant_of(g.get("credentials") or Credentials(), call.scope)
    return _Handover(stream, protocol, chunk(first) if chunked else first, mimetype, grant)


def server_sent_events(call: Call, key: str, kind: str, render: Callable[[bytes], bytes] = _as_is) -> Response:
    """Server-Sent Events, one per entry of Redis stream ``key`` (``render`` makes its data),
    with the entry's id; resumes after ``Last-Event-ID``."""
    after = last_event_id()  # a 400 for a bad one, before anything is opened
    encoder = functools.partial(sse_encoder, render)
    return _serve(call, key, kind, encoder, SSE_CONNECTED, "text/event-stream", SSE_HEARTBEAT, after)


def console_byte_stream(call: Call, key: str) -> Response:
    """``/api/stream_console_output``: new console messages in bluesky-httpserver's byte format.

    It has no cursor to resume from, so it starts with the messages of the last
    ``CONSOLE_STREAM_LOOK_BACK_MS``: a client that opens it and at once sends a request (as
    bluesky-httpserver's own test does) sees that request's lines even when its opening is
    handled after the request went through RE Manager (another worker, a busy machine)."""
    return _serve(
        call, key, "console_stream", console_byte_encoder, b"", "text/plain", look_back_ms=CONSOLE_STREAM_LOOK_BACK_MS
    )
