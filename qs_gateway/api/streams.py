"""Long-lived responses: Server-Sent Events, the NDJSON-like console stream, websocket pumps.

Each open stream holds one worker thread. It ends when the client goes away (noticed on the
next write, a heartbeat, or by peeking at the socket), or when the worker shuts down.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator

import orjson
from flask import Response, request

from ..exceptions import ServiceUnavailable
from ..extensions import services
from ..streaming.hub import StreamClosed, StreamHub, Subscription, TooManyStreams

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
POLL_SECONDS = 1.0


def subscribe(key: str, kind: str, after: str | None = None) -> Subscription:
    """Open a stream on Redis stream ``key``; ``kind`` names it in the open-streams metric."""
    try:
        subscription = services().hub.subscribe(key, after)
    except TooManyStreams as exc:
        raise ServiceUnavailable(f"Too many open streams: {exc}", 5) from None
    except StreamClosed:
        raise ServiceUnavailable("The server is shutting down", 1) from None
    metrics = services().metrics
    if metrics is not None:
        gauge = metrics.open_streams.labels(kind)
        gauge.inc()
        subscription.on_close = gauge.dec
    return subscription


def _client_gone(sock: socket.socket | None) -> bool:
    """True once the peer closed the connection (peeks without consuming)."""
    if sock is None:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


def _pump(subscription: Subscription, heartbeat: float | None) -> Iterator[list[tuple[str, bytes]] | None]:
    """Batches of entries; ``None`` when a heartbeat is due. Ends with the client or the worker.

    The generator runs after the view has returned (outside the request context), so what it
    needs from the request is taken now.
    """
    return _pump_batches(subscription, services().hub, request.environ.get("gunicorn.socket"), heartbeat)


def _pump_batches(
    subscription: Subscription, hub: StreamHub, sock: socket.socket | None, heartbeat: float | None
) -> Iterator[list[tuple[str, bytes]] | None]:
    last_write = time.monotonic()
    try:
        while True:
            try:
                entries = subscription.get(POLL_SECONDS)
            except StreamClosed:
                return
            if entries:
                last_write = time.monotonic()
                yield entries
            elif heartbeat is not None and time.monotonic() - last_write >= heartbeat:
                last_write = time.monotonic()
                yield None
            elif _client_gone(sock):
                return
    finally:
        hub.unsubscribe(subscription)


def server_sent_events(subscription: Subscription, render: Callable[[bytes], bytes] = lambda data: data) -> Response:
    heartbeat = services().settings.streams.sse_heartbeat_seconds
    batches = _pump(subscription, heartbeat)

    def body() -> Iterator[bytes]:
        yield b": connected\n\n"  # sends the headers at once
        for entries in batches:
            if entries is None:
                yield b": heartbeat\n\n"
                continue
            yield b"".join(b"id: %s\ndata: %s\n\n" % (entry_id.encode(), render(data)) for entry_id, data in entries)

    return Response(body(), mimetype="text/event-stream", headers=STREAM_HEADERS)


def console_byte_stream(subscription: Subscription) -> Response:
    """``/api/stream_console_output``: each message as Python's ``json.dumps`` writes it, no separator
    (the byte format of bluesky-httpserver, which its clients parse)."""
    batches = _pump(subscription, heartbeat=None)

    def body() -> Iterator[bytes]:
        yield b""  # gunicorn sends the headers on the first write, even an empty one
        for entries in batches:
            for _, data in entries or ():
                message = orjson.loads(data)
                yield json.dumps({"time": message.get("time"), "msg": message.get("msg")}).encode()

    return Response(body(), mimetype="text/plain", headers=STREAM_HEADERS)


def last_event_id() -> str | None:
    """Where an SSE client resumes: the ``Last-Event-ID`` header (sent by EventSource on
    reconnect) or the ``last_event_id`` query parameter (for a first connection)."""
    return request.headers.get("Last-Event-ID") or request.args.get("last_event_id") or None
