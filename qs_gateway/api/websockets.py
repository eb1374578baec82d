"""Websockets: who may open one, the handshake, and the hand-over to the worker's fan-out.

Credentials, in the order they are looked for:

* the ``Authorization`` header, ``ApiKey <key>`` (bluesky-httpserver's only way) or
  ``Bearer <access token>``: checked before the handshake; wrong ones get a plain 401 answer;
* the query parameters ``?api_key=`` or ``?access_token=`` (browsers cannot set headers on a
  websocket): checked after the handshake; wrong ones close the socket with code 4001;
* nothing at the handshake: the public role, if it has the scope; otherwise the first text
  message must be ``{"type": "auth", "api_key": "..."}`` or ``{"type": "auth", "access_token":
  "..."}`` within :data:`AUTH_MESSAGE_SECONDS`: code 4401 if none came, 4001 if it is wrong.

Scopes are checked as for HTTP, and again every :data:`RECHECK_SECONDS` while the socket is
open: a deleted key, a revoked or expired token closes it (4001). No cookie is read or set.

The stream is opened before the handshake, so a worker at its stream limit (or without Redis)
answers 503 with ``Retry-After`` instead of opening a socket it would not serve. Once the
handshake is written (and the credentials are settled) the socket belongs to the worker's
fan-out thread, like every stream (see :mod:`.streams`); only the wait for a first message
holds the request thread, for at most :data:`AUTH_MESSAGE_SECONDS`.
"""

from __future__ import annotations

import functools
import socket
import time
from collections.abc import Callable

import orjson
from flask import Response, request
from wsproto.events import CloseConnection, Ping, TextMessage

from ..auth import Credentials, Principal
from ..exceptions import BadRequest, TooManyRequests, Unauthorized
from ..extensions import services
from ..streaming.hub import RECHECK_SECONDS
from ..streaming.stream import Encoder, Entry, Stream
from ..streaming.takeover import can_take, end_request, take
from ..streaming.wire import (
    CLOSE_INVALID_CREDENTIALS,
    WebSocketStream,
    text_frame,
    valid_websocket_key,
    websocket_accept,
)
from .access import authorize
from .streams import grant_of, open_stream

AUTH_MESSAGE_SECONDS = 10.0
CLOSE_NO_CREDENTIALS = 4401
_LONGEST_AUTH_MESSAGE = 64 * 1024
_CLOSING_SECONDS = 2.0  # a refused client has this long to answer the close

__all__ = [
    "AUTH_MESSAGE_SECONDS",
    "CLOSE_INVALID_CREDENTIALS",
    "CLOSE_NO_CREDENTIALS",
    "RECHECK_SECONDS",
    "serve_websocket",
]


def handshake_credentials() -> tuple[Credentials, str]:
    """The credentials of the handshake and where they came from: "header", "query" or ""."""
    scheme, _, secret = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "apikey" and secret.strip():
        return Credentials(api_key=secret.strip(), api_key_source="header"), "header"
    if scheme.lower() == "bearer" and secret.strip():
        return Credentials(bearer_token=secret.strip()), "header"
    if request.args.get("api_key"):
        return Credentials(api_key=request.args["api_key"], api_key_source="query"), "query"
    if request.args.get("access_token"):
        return Credentials(bearer_token=request.args["access_token"]), "query"
    return Credentials(), ""


def _credentials_of_message(text: str | None) -> Credentials | None:
    """The credentials of a first message ``{"type": "auth", ...}``; None if it is not one."""
    try:
        message = orjson.loads(text) if text is not None else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict) or message.get("type") != "auth":
        return None
    api_key, token = message.get("api_key"), message.get("access_token")
    if isinstance(api_key, str) and api_key:
        return Credentials(api_key=api_key, api_key_source="message")
    if isinstance(token, str) and token:
        return Credentials(bearer_token=token)
    return None


class Refused(Exception):
    """The socket is closed with ``code``: its credentials were refused (or never came)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class ClientLeft(Exception):
    pass


def _check(credentials: Credentials, scope: str) -> Principal:
    auth = services().auth
    try:
        principal = auth.authenticate(credentials, request.remote_addr)
        auth.require(principal, frozenset({scope}))
    except (Unauthorized, TooManyRequests) as exc:  # 429: the address guessed too often
        raise Refused(CLOSE_INVALID_CREDENTIALS, str(exc.detail)[:120]) from None
    return principal


@functools.cache
def websocket_encoder(accept: Callable[[bytes], bool]) -> Encoder:
    def encode(entries: list[Entry]) -> bytes:
        return b"".join(text_frame(data) for _, data in entries if accept(data))

    return encode


def serve_websocket(scope: str, key: str, kind: str, accept: Callable[[bytes], bool]) -> Response:
    """Open a websocket on Redis stream ``key``, frames filtered by ``accept``."""
    credentials, where = handshake_credentials()
    upgrade = request.environ.get("HTTP_UPGRADE", "").lower() == "websocket"
    if where == "header" or not upgrade:
        authorize(scope, credentials)  # a plain 401 before the handshake
    if not upgrade:
        raise BadRequest("This endpoint is a websocket: the request must ask to upgrade (Upgrade: websocket)")
    client_key = request.headers.get("Sec-WebSocket-Key", "")
    if request.headers.get("Sec-WebSocket-Version") != "13" or not valid_websocket_key(client_key):
        raise BadRequest("A websocket handshake needs Sec-WebSocket-Version: 13 and a valid Sec-WebSocket-Key")
    if not can_take(request.environ):
        raise BadRequest("Websockets need a server that hands its connections over: gunicorn, without TLS of its own")
    stream = open_stream(key, kind, websocket_encoder(accept))  # 503 before the handshake when full
    return _Handshake(stream, websocket_accept(client_key), credentials, where, scope)


class _Handshake(Response):
    """The 101 answer (logged as such). Called by gunicorn, it takes the connection, writes the
    handshake, settles the credentials and hands the socket to the fan-out. The app's hooks
    leave no header on it: the handshake carries no cookie, no CORS and no caching headers."""

    def __init__(self, stream: Stream, accept: str, credentials: Credentials, where: str, scope: str) -> None:
        super().__init__(status=101)
        self._handshake = (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
        ).encode("ascii")
        self._stream, self._credentials, self._where, self._scope = stream, credentials, where, scope
        self._hub = services().hub
        self._public = scope in services().auth.public.scopes

    def __call__(self, environ: dict, start_response: Callable) -> object:
        hub, stream = self._hub, self._stream
        connection = take(environ)
        protocol = WebSocketStream()
        try:
            connection.sendall(self._handshake)
            credentials = self._settle(connection, protocol)
        except Refused as refused:
            hub.release(stream)  # before any frame of it is sent
            _refuse(connection, protocol, refused.code, refused.reason)
        except (ClientLeft, OSError):
            hub.release(stream)
            connection.close()
        else:
            grant = None if credentials.empty else grant_of(credentials, self._scope)
            hub.attach(stream, connection, protocol, grant=grant)
        end_request()

    def _settle(self, connection: socket.socket, protocol: WebSocketStream) -> Credentials:
        """The credentials the socket is served with, once the handshake is done."""
        if self._where == "header":
            return self._credentials  # checked before the handshake
        if self._where == "query":
            _check(self._credentials, self._scope)
            return self._credentials
        if self._public:
            return self._credentials  # the public role may read this
        text = _first_message(connection, protocol, AUTH_MESSAGE_SECONDS)
        if text is None:
            raise Refused(CLOSE_NO_CREDENTIALS, 'No credentials: send {"type": "auth", "api_key": ...} first')
        sent = _credentials_of_message(text)
        if sent is None:
            raise Refused(CLOSE_INVALID_CREDENTIALS, 'The first message must be {"type": "auth", ...}')
        _check(sent, self._scope)
        return sent


def _first_message(connection: socket.socket, protocol: WebSocketStream, seconds: float) -> str | None:
    """The first text message, waiting up to ``seconds``; None if none came in time."""
    deadline = time.monotonic() + seconds
    parts: list[str] = []
    ws = protocol.connection
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        connection.settimeout(remaining)
        try:
            data = connection.recv(65536)
        except TimeoutError:
            return None
        if not data:
            raise ClientLeft()
        ws.receive_data(data)
        for event in ws.events():
            if isinstance(event, Ping):
                connection.sendall(ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                raise ClientLeft()
            elif isinstance(event, TextMessage):
                parts.append(event.data)
                if event.message_finished:
                    return "".join(parts)
                if sum(map(len, parts)) > _LONGEST_AUTH_MESSAGE:
                    raise Refused(CLOSE_INVALID_CREDENTIALS, "The first message is too long")


def _refuse(connection: socket.socket, protocol: WebSocketStream, code: int, reason: str) -> None:
    """Close with ``code`` and wait briefly for the client's answer, so that it reads the code."""
    try:
        connection.settimeout(_CLOSING_SECONDS)
        connection.sendall(protocol.goodbye(code, reason))
        connection.shutdown(socket.SHUT_WR)
        while connection.recv(65536):
            pass
    except OSError:
        pass
    finally:
        connection.close()
