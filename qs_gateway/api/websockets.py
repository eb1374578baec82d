"""Websockets: who may open one, and the pump that feeds it from a Redis stream.

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

The stream is subscribed before the handshake, so a worker at its stream limit answers 503 with
``Retry-After`` instead of opening a socket it would not serve.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
from flask import Response, request
from simple_websocket import ConnectionClosed
from simple_websocket import Server as WebSocket

from ..auth import Credentials, Principal
from ..exceptions import BadRequest, TooManyRequests, Unauthorized
from ..extensions import services
from ..redis_store import StoreUnavailable
from ..streaming.hub import StreamClosed, Subscription
from .access import authorize
from .streams import POLL_SECONDS, subscribe

AUTH_MESSAGE_SECONDS = 10.0
RECHECK_SECONDS = 2.0
CLOSE_INVALID_CREDENTIALS = 4001
CLOSE_NO_CREDENTIALS = 4401


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


def _credentials_of_message(text: str | bytes | None) -> Credentials | None:
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


def _check(credentials: Credentials, scope: str) -> Principal:
    auth = services().auth
    try:
        principal = auth.authenticate(credentials, request.remote_addr)
        auth.require(principal, frozenset({scope}))
    except (Unauthorized, TooManyRequests) as exc:  # 429: the address guessed too often
        raise Refused(CLOSE_INVALID_CREDENTIALS, str(exc.detail)[:120]) from None
    return principal


def _after_handshake(ws: WebSocket, credentials: Credentials, where: str, scope: str) -> Credentials:
    """The credentials the socket is served with, once the handshake is done."""
    if where == "header":
        return credentials  # checked before the handshake
    if where == "query":
        _check(credentials, scope)
        return credentials
    if scope in services().auth.public.scopes:
        return credentials  # the public role may read this
    text = ws.receive(timeout=AUTH_MESSAGE_SECONDS)
    if text is None:
        raise Refused(CLOSE_NO_CREDENTIALS, "No credentials: send {\"type\": \"auth\", \"api_key\": ...} first")
    sent = _credentials_of_message(text)
    if sent is None:
        raise Refused(CLOSE_INVALID_CREDENTIALS, "The first message must be {\"type\": \"auth\", ...}")
    _check(sent, scope)
    return sent


def _still_allowed(credentials: Credentials, scope: str) -> bool:
    try:
        _check(credentials, scope)
    except Refused:
        return False
    except StoreUnavailable:
        return True  # Redis is away for a moment: the socket is not the one to blame
    return True


def serve_websocket(scope: str, key: str, kind: str, accept: Callable[[bytes], bool]) -> Response:
    """Open a websocket on Redis stream ``key``, frames filtered by ``accept``."""
    credentials, where = handshake_credentials()
    upgrade = request.environ.get("HTTP_UPGRADE", "").lower() == "websocket"
    if where == "header" or not upgrade:
        authorize(scope, credentials)  # a plain 401 before the handshake
    if not upgrade:
        raise BadRequest("This endpoint is a websocket: the request must ask to upgrade (Upgrade: websocket)")
    subscription = subscribe(key, kind)  # 503 before the handshake when the worker is full
    ws = None
    try:
        ws = WebSocket(request.environ)
        credentials = _after_handshake(ws, credentials, where, scope)
        _pump(ws, subscription, accept, lambda: _still_allowed(credentials, scope))
    except Refused as refused:
        _close(ws, refused.code, refused.reason)
    except ConnectionClosed:
        pass  # the client left
    finally:
        services().hub.unsubscribe(subscription)
        _close(ws)
    return _websocket_done(ws)


def _close(ws: WebSocket | None, code: int | None = None, reason: str | None = None) -> None:
    if ws is None:
        return
    try:
        ws.close(code, reason)
    except ConnectionClosed:  # the client closed it first, the usual ending
        pass


def _pump(
    ws: WebSocket, subscription: Subscription, accept: Callable[[bytes], bool], allowed: Callable[[], bool]
) -> None:
    checked_at = time.monotonic()
    while ws.connected:
        try:
            entries = subscription.get(POLL_SECONDS)
        except StreamClosed:
            return
        for _, data in entries:
            if accept(data):
                ws.send(data.decode())
        if time.monotonic() - checked_at >= RECHECK_SECONDS:
            checked_at = time.monotonic()
            if not allowed():
                raise Refused(CLOSE_INVALID_CREDENTIALS, "The credentials are no longer valid")


def _websocket_done(ws: WebSocket | None) -> Response:
    """What the view returns once the websocket has ended: nothing more may be written.

    Under gunicorn the connection was taken over by the websocket, and raising StopIteration
    when the response is called tells gunicorn to close it without writing a response.
    """

    class Done(Response):
        def __call__(self, environ: object, start_response: object) -> object:
            if ws is not None and ws.mode == "gunicorn":
                raise StopIteration()
            return super().__call__(environ, start_response)

    return Done()

