"""What browsers need: the API-key and CSRF cookies, the CSRF double-submit check, and CORS.

A browser that opened a page with ``?api_key=`` gets the key back as an httponly cookie and
sends it with every request, also with requests another site makes it send. So a request that
changes something (not GET/HEAD/OPTIONS/TRACE) and carries that cookie must also echo the CSRF
cookie in the ``x-csrf`` header or the ``csrf`` query parameter (double submit); otherwise 403.
Clients that send their credentials in a header are not affected.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable

from flask import Flask, Response, g, request

from ..auth.credentials import API_KEY_COOKIE
from ..exceptions import Forbidden

CSRF_COOKIE = "bluesky_httpserver_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

# bluesky-httpserver's texts (inherited from Tiled, hence the cookie name in the first one).
CSRF_NO_COOKIE = "Expected tiled_csrf_token cookie"
CSRF_NOT_ECHOED = "Expected csrf query parameter or x-csrf header"
CSRF_MISMATCH = "Double-submit CSRF tokens do not match"

CORS_MAX_AGE = 600


def check_csrf() -> None:
    if request.method in SAFE_METHODS or "HTTP_COOKIE" not in request.environ:
        return
    if API_KEY_COOKIE not in request.cookies:
        return
    expected = request.cookies.get(CSRF_COOKIE)
    if not expected:
        raise Forbidden(CSRF_NO_COOKIE)
    echoed = request.headers.get("x-csrf") or request.args.get("csrf")
    if not echoed:
        raise Forbidden(CSRF_NOT_ECHOED)
    if not hmac.compare_digest(expected.encode(), echoed.encode()):
        raise Forbidden(CSRF_MISMATCH)


def _sets_cookie(response: Response, name: str) -> bool:
    return any(header.startswith(f"{name}=") for header in response.headers.getlist("Set-Cookie"))


def set_cookies(response: Response) -> Response:
    environ = request.environ
    if "HTTP_AUTHORIZATION" in environ and "api_key" not in environ.get("QUERY_STRING", ""):
        # Only a client that may authenticate by cookie needs the cookies; a request with an
        # Authorization header (scripts, bluesky-queueserver-api, GUIs) is spared the work.
        return response
    if CSRF_COOKIE not in request.cookies and not _sets_cookie(response, CSRF_COOKIE):
        response.set_cookie(CSRF_COOKIE, secrets.token_urlsafe(32), httponly=True, samesite="Lax")
    credentials = g.get("credentials")
    principal = g.get("principal")
    if (
        credentials is not None
        and credentials.api_key_source == "query"
        and principal is not None
        and principal.method in ("api_key", "single_user_key")
    ):
        response.set_cookie(API_KEY_COOKIE, credentials.api_key, httponly=True, samesite="Lax")
    return response


class Cors:
    """Cross-origin requests from the configured origins (``*`` allows any), with credentials."""

    def __init__(self, origins: Iterable[str]) -> None:
        self.origins = frozenset(origins)

    def allowed_origin(self) -> str | None:
        origin = request.headers.get("Origin")
        if origin and ("*" in self.origins or origin in self.origins):
            return origin
        return None

    def preflight(self) -> Response | None:
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        if self.allowed_origin() is None:
            return None
        response = Response(status=200)
        response.headers["Access-Control-Allow-Methods"] = "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
        requested_headers = request.headers.get("Access-Control-Request-Headers")
        if requested_headers:
            response.headers["Access-Control-Allow-Headers"] = requested_headers
        response.headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE)
        return response

    def add_headers(self, response: Response) -> Response:
        origin = self.allowed_origin()
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.vary.add("Origin")
        return response


def register_browser_hooks(app: Flask, allow_origins: Iterable[str]) -> None:
    cors = Cors(allow_origins)
    if cors.origins:
        app.before_request(cors.preflight)
        app.after_request(cors.add_headers)
    app.before_request(check_csrf)
    app.after_request(set_cookies)
