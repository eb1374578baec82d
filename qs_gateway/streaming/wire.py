"""Bytes on a connection the fan-out serves: HTTP chunks, websocket frames, and what a client sends back.

A *protocol* says how one kind of handed-over connection behaves once its response has started:
what to answer to the bytes the client sends, what to send when the server ends the stream,
and which comment keeps a quiet stream alive. Messages themselves are framed by the encoders
of :mod:`qs_gateway.api.streams`, once per message for all connections of a kind.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Callable

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import CloseConnection, Ping, TextMessage

END_OF_CHUNKS = b"0\r\n\r\n"
_WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3

CLOSE_GOING_AWAY = 1001  # the server is stopping
CLOSE_INVALID_CREDENTIALS = 4001  # the credentials are wrong, or no longer valid


def chunk(data: bytes) -> bytes:
    """One piece of a ``Transfer-Encoding: chunked`` body (nothing for no data: an empty chunk ends it)."""
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


def text_frame(payload: bytes) -> bytes:
    """A complete, unmasked websocket text frame: what a server sends, the same bytes for every client."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


def websocket_accept(key: str) -> str:
    """``Sec-WebSocket-Accept`` for the client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _WEBSOCKET_GUID).digest()).decode("ascii")


def valid_websocket_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except (ValueError, UnicodeEncodeError):
        return False


class HttpStream:
    """A streamed HTTP response (Server-Sent Events, the console byte stream) after its head.

    The client sends nothing more; whatever it does send is ignored, and end of file means it left.
    """

    def __init__(self, *, chunked: bool, heartbeat: bytes | None = None) -> None:
        self.chunked = chunked
        self.heartbeat = chunk(heartbeat) if chunked and heartbeat else heartbeat

    def received(self, data: bytes) -> tuple[bytes, bool]:
        """The reply to bytes the client sent, and whether the connection is done."""
        return b"", False

    def goodbye(self, code: int, reason: str) -> bytes:
        """What ends the response when the server ends the stream."""
        return END_OF_CHUNKS if self.chunked else b""


class WebSocketStream:
    """An open websocket: pings are answered, a close is returned, other frames are ignored."""

    heartbeat = None

    def __init__(self, connection: Connection | None = None) -> None:
        self.connection = connection or Connection(ConnectionType.SERVER)

    def received(self, data: bytes) -> tuple[bytes, bool]:
        ws = self.connection
        if ws.state is ConnectionState.CLOSED:  # bytes after both closes: the connection is done
            return b"", True
        ws.receive_data(data)
        reply = []
        for event in ws.events():
            if isinstance(event, Ping):
                if ws.state is ConnectionState.OPEN:  # no pong once our close is sent
                    reply.append(ws.send(event.response()))
            elif isinstance(event, TextMessage):
                self.message(event)
            elif isinstance(event, CloseConnection):
                # the client's close (or a frame it got wrong, which wsproto reports as one)
                if ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                    reply.append(ws.send(CloseConnection(event.code, event.reason or "")))
                return b"".join(reply), True
        return b"".join(reply), False

    def message(self, event: TextMessage) -> None:
        """A text message (or a part of one) from the client: clients of a stream only listen."""

    def goodbye(self, code: int, reason: str) -> bytes:
        if self.connection.state is not ConnectionState.OPEN:
            return b""
        return self.connection.send(CloseConnection(code, reason))


class WebSocketLogin(WebSocketStream):
    """A websocket whose client logs in with its first text message: the message (at most
    ``longest`` characters and one more, to tell that it is too long) goes to ``on_message``,
    which is called in the fan-out thread and must not wait; later messages are ignored."""

    def __init__(self, on_message: Callable[[str], None], longest: int) -> None:
        super().__init__()
        self._on_message, self._longest = on_message, longest
        self._parts: list[str] | None = []

    def message(self, event: TextMessage) -> None:
        parts = self._parts
        if parts is None:
            return
        parts.append(event.data)
        size = sum(map(len, parts))
        if event.message_finished or size > self._longest:
            self._parts = None
            self._on_message("".join(parts)[: self._longest + 1])
