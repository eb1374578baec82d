"""Websockets: who may open one, the handshake, and the hand-over to the worker's fan-out.

Credentials, in the order they are looked for:

* the ``Authorization`` header, ``ApiKey <key>`` (bluesky-httpserver's only way) or
  ``Bearer <access token>``: checked before the handshake; wrong ones get a plain 401 answer;
* the query parameters ``?api_key=`` or ``?access_token=`` (browsers cannot set headers on a
  websocket): checked before the handshake too, but wrong ones are told after it, by closing the
  socket with code 4001;
* nothing at the handshake: the public role, if it has the scope; otherwise the first text
  message must be ``{"type": "auth", "api_key": "..."}`` or ``{"type": "auth", "access_token":
  "..."}`` within :data:`AUTH_MESSAGE_SECONDS`: code 4401 if none came, 4001 if it is wrong.

Scopes are checked as for HTTP, and again every :data:`RECHECK_SECONDS` while the socket is
open: a deleted key, a revoked or expired token closes it (4001). No cookie is read or set.

The stream is opened before the handshake, so a worker at its stream limit (or without Redis)
answers 503 with ``Retry-After`` instead of opening a socket it would not serve. No request
thread waits for a client's bytes: the handshake itself is written by the worker's fan-out
thread, which serves the socket from then on (see :mod:`.streams`). A socket that must still log
in is handed over *not admitted* (nothing of its stream is sent); the fan-out collects its first
message, the hub's login thread checks it (Redis, not the client) and admits the socket or closes
it. A close is the fan-out's too: it waits for the client's answer for a short time in all.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from flask import Response, request

from ..auth import Credentials
from ..auth.authenticator import Authenticator
from ..exceptions import BadRequest, TooManyRequests, Unauthorized
from ..extensions import services
from ..redis_store import StoreUnavailable
from ..streaming.hub import RECHECK_SECONDS, StreamHub
from ..streaming.stream import Admission, Encoder, Entry, Stream
from ..streaming.takeover import can_take, end_request, take
from ..streaming.wire import (
    CLOSE_INVALID_CREDENTIALS,
    WebSocketLogin,
    WebSocketStream,
    text_frame,
    valid_websocket_key,
    websocket_accept,
)
from .access import authorize
from .streams import Grant, open_stream

logger = logging.getLogger(__name__)

AUTH_MESSAGE_SECONDS = 10.0
CLOSE_NO_CREDENTIALS = 4401
CLOSE_TRY_AGAIN_LATER = 1013  # RFC 6455 registry: the credentials could not be checked (Redis is away)
CLOSE_INTERNAL_ERROR = 1011
_LONGEST_AUTH_MESSAGE = 64 * 1024
_NO_CREDENTIALS = Admission(
    AUTH_MESSAGE_SECONDS, CLOSE_NO_CREDENTIALS, 'No credentials: send {"type": "auth", "api_key": ...} first'
)

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


def _credentials_of_message(text: str) -> Credentials | None:
    """The credentials of a first message ``{"type": "auth", ...}``; None if it is not one."""
    try:
        message = orjson.loads(text)
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


@dataclass(frozen=True)
class _Checker:
    """Checks credentials for one scope, for a client at ``address``, in any thread."""

    auth: Authenticator
    scope: str
    address: str | None

    def grant(self, credentials: Credentials) -> Grant:
        """The grant the socket is served with; Refused if the credentials may not read the stream."""
        try:
            principal = self.auth.authenticate(credentials, self.address)
            self.auth.require(principal, frozenset({self.scope}))
        except (Unauthorized, TooManyRequests) as exc:  # 429: the address guessed too often
            raise Refused(CLOSE_INVALID_CREDENTIALS, str(exc.detail)[:120]) from None
        return Grant(self.auth, credentials, self.scope)


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
    checker = _Checker(services().auth, scope, request.remote_addr)
    settled: Grant | Refused | None = None  # None: the first message will tell
    if where == "query":
        try:
            settled = checker.grant(credentials)  # refused: told after the handshake
        except Refused as refused:
            settled = refused
    elif where == "header" or scope in services().auth.public.scopes:
        settled = Grant(checker.auth, credentials, scope)  # checked above, or the public role reads this
    stream = open_stream(key, kind, websocket_encoder(accept))  # 503 before the handshake when full
    return _Handshake(stream, websocket_accept(client_key), settled, checker)


class _Handshake(Response):
    """The 101 answer (logged as such). Called by gunicorn, it takes the connection and hands it
    to the fan-out, which writes the handshake. The app's hooks leave no header on it: the
    handshake carries no cookie, no CORS and no caching headers."""

    def __init__(self, stream: Stream, accept: str, settled: Grant | Refused | None, checker: _Checker) -> None:
        super().__init__(status=101)
        self._handshake = (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
        ).encode("ascii")
        self._stream, self._settled, self._checker = stream, settled, checker
        self._hub: StreamHub = services().hub

    def __call__(self, environ: dict, start_response: Callable) -> object:
        hub, stream, settled = self._hub, self._stream, self._settled
        connection = take(environ)
        if isinstance(settled, Grant):
            grant = None if settled.credentials.empty else settled
            hub.attach(stream, connection, WebSocketStream(), self._handshake, grant=grant)
        elif isinstance(settled, Refused):  # nothing of the stream is sent before the close
            hub.attach(stream, connection, WebSocketStream(), self._handshake, admission=_NO_CREDENTIALS)
            hub.end(stream, settled.code, settled.reason)
        else:
            protocol = WebSocketLogin(self._first_message, _LONGEST_AUTH_MESSAGE)
            hub.attach(stream, connection, protocol, self._handshake, admission=_NO_CREDENTIALS)
        end_request()

    def _first_message(self, text: str) -> None:
        """In the fan-out thread: the client's first message is checked on the login thread."""
        self._hub.check_login(functools.partial(self._log_in, text))

    def _log_in(self, text: str) -> None:
        hub, stream = self._hub, self._stream
        try:
            if len(text) > _LONGEST_AUTH_MESSAGE:
                raise Refused(CLOSE_INVALID_CREDENTIALS, "The first message is too long")
            sent = _credentials_of_message(text)
            if sent is None:
                raise Refused(CLOSE_INVALID_CREDENTIALS, 'The first message must be {"type": "auth", ...}')
            grant = self._checker.grant(sent)
        except Refused as refused:
            hub.end(stream, refused.code, refused.reason)
        except StoreUnavailable:
            hub.end(stream, CLOSE_TRY_AGAIN_LATER, "The credentials cannot be checked now; try again later")
        except Exception:
            logger.exception("Checking the first message of a websocket failed")
            hub.end(stream, CLOSE_INTERNAL_ERROR, "The credentials could not be checked")
        else:
            hub.admit(stream, grant)
