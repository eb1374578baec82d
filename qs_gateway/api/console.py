"""RE Manager's console output: rendered text, polling, streams and a websocket.

What every worker serves comes from Redis (see :mod:`qs_gateway.streaming`), so a client may
reach any worker on any host and still gets each message once and in order.
"""

from __future__ import annotations

from flask import Response

from ..extensions import services
from ..manager import Reply
from .declare import Call, Resource
from .schemas import Empty, Int64, Payload, identifier
from .streams import console_byte_stream, server_sent_events


class ConsoleOutput(Payload):
    nlines = Int64(minimum=0, allow_none=True, load_default=200)


class ConsoleOutputUpdate(Payload):
    last_msg_uid = identifier(required=True)


console = Resource("console", __name__)


@console.endpoint("/console_output", scope="read:console", schema=ConsoleOutput)
def console_output(call: Call) -> dict:
    """The last `nlines` lines of console output (default 200), rendered as a terminal shows them."""
    text, _ = services().console.text(call.payload["nlines"])
    return {"success": True, "msg": "", "text": text}


@console.endpoint("/console_output/uid", scope="read:console", schema=Empty)
def console_output_uid(call: Call) -> dict:
    """An id that changes whenever the console output changes."""
    return {"success": True, "msg": "", "console_output_uid": services().console.uid()}


@console.endpoint("/console_output_update", scope="read:console", schema=ConsoleOutputUpdate)
def console_output_update(call: Call) -> Reply:
    """Messages after `last_msg_uid` ("ALL": every kept message), and the new `last_msg_uid`."""
    # a Reply, so that a large answer ("ALL" can be thousands of messages) is gzip-compressed
    return Reply(body=services().console.update(call.payload["last_msg_uid"]))


@console.endpoint("/stream_console_output", scope="read:console", kind="stream", media_type="text/plain")
def stream_console_output(call: Call) -> Response:
    """New console messages as they come, as concatenated JSON objects (bluesky-httpserver's format)."""
    return console_byte_stream(call, services().stream_keys.console)


@console.endpoint("/console_output/events", scope="read:console", kind="stream", media_type="text/event-stream")
def console_output_events(call: Call) -> Response:
    """Server-Sent Events, one per console message; resumes after `Last-Event-ID`."""
    return server_sent_events(call, services().stream_keys.console, "console_events")


console.websocket(
    "/console_output/ws",
    scope="read:console",
    stream="console",
    summary='Each console message as a text frame `{"time", "msg"}`.',
)
