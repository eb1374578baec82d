"""What browsers need: the API-key and CSRF cookies, the CSRF double-submit check, and CORS.

A browser that opened a page with ``?api_key=`` gets the key back as an httponly cookie and
sends it with every request, also with requests another site makes it send. So a request that
changes something (not GET/HEAD/OPTIONS/TRACE) and carries that cookie must also echo the CSRF
cookie in the ``x-csrf`` header or the ``csrf`` query parameter (double submit); otherwise 403.
Clients that send their credentials in a header are not affected.

The CSRF token that goes with an API-key cookie is an HMAC of that key: a site that can plant
cookies for the gateway's domain (a sibling subdomain) can plant a CSRF cookie of its choice,
but not one that belongs to the victim's key, so a planted pair of cookie and echo is refused.
Both cookies are ``Secure`` when the request came over https (directly, or through a trusted
proxy: ``X-Forwarded-Proto`` through ProxyFix).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable

from flask import Flask, Response, g, request
from flask_cors import CORS

from ..auth.credentials import API_KEY_COOKIE
from ..exceptions import Forbidden

CSRF_COOKIE = "bluesky_httpserver_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

# bluesky-httpserver's texts (inherited from Tiled, hence the cookie name in the first one).
CSRF_NO_COOKIE = "Expected tiled_csrf_token cookie"
CSRF_NOT_ECHOED = "Expected csrf query parameter or x-csrf header"
CSRF_MISMATCH = "Double-submit CSRF tokens do not match"
# The gateway's own: the pair matches, but it is not the token of the API-key cookie.
CSRF_NOT_BOUND = "CSRF token does not belong to the API-key cookie; reload the page to get a new one"

_CSRF_LABEL = b"qs-gateway csrf token"


def csrf_token_for(api_key: str) -> str:
    """The CSRF token of an API key: only who holds the key can compute it."""
    digest = hmac.new(api_key.encode(), _CSRF_LABEL, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def check_csrf() -> None:
    environ = request.environ
    if "HTTP_COOKIE" not in environ or environ.get("REQUEST_METHOD", "GET").upper() in SAFE_METHODS:
        return
    api_key = request.cookies.get(API_KEY_COOKIE)
    if api_key is None:
        return
    expected = request.cookies.get(CSRF_COOKIE)
    if not expected:
        raise Forbidden(CSRF_NO_COOKIE)
    echoed = request.headers.get("x-csrf") or request.args.get("csrf")
    if not echoed:
        raise Forbidden(CSRF_NOT_ECHOED)
    if not hmac.compare_digest(expected.encode(), echoed.encode()):
        raise Forbidden(CSRF_MISMATCH)
    if not hmac.compare_digest(expected.encode(), csrf_token_for(api_key).encode()):
        raise Forbidden(CSRF_NOT_BOUND)


def _sets_cookie(response: Response, name: str) -> bool:
    return any(header.startswith(f"{name}=") for header in response.headers.getlist("Set-Cookie"))


def set_cookies(response: Response) -> Response:
    """The API-key cookie for a key that came in the query string, and the CSRF cookie: the
    token of the API-key cookie the browser will send, or a random one while there is none."""
    environ = request.environ
    if "HTTP_AUTHORIZATION" in environ and "api_key" not in environ.get("QUERY_STRING", ""):
        # Only a client that may authenticate by cookie needs the cookies; a request with an
        # Authorization header (scripts, bluesky-queueserver-api, GUIs) is spared the work.
        return response
    if _sets_cookie(response, CSRF_COOKIE):  # logout forgets the cookies: leave it so
        return response
    secure = request.is_secure
    credentials = g.get("credentials")
    principal = g.get("principal")
    api_key = request.cookies.get(API_KEY_COOKIE)
    if (
        credentials is not None
        and credentials.api_key_source == "query"
        and principal is not None
        and principal.method in ("api_key", "single_user_key")
    ):
        api_key = credentials.api_key
        response.set_cookie(API_KEY_COOKIE, api_key, httponly=True, samesite="Lax", secure=secure)
    present = request.cookies.get(CSRF_COOKIE)
    if api_key is not None:
        token = csrf_token_for(api_key)
        if present != token:  # none yet, a random one from before the key, or a planted one
            response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="Lax", secure=secure)
    elif present is None:
        response.set_cookie(CSRF_COOKIE, secrets.token_urlsafe(32), httponly=True, samesite="Lax", secure=secure)
    return response


# CORS: the headers the API reads (the rest a browser sends without asking), and those a page
# may read from an answer beside the CORS-safelisted ones.
CORS_ALLOWED_HEADERS = ("Authorization", "Content-Type", "If-None-Match", "Last-Event-ID", "X-CSRF", "X-Request-ID")
CORS_EXPOSED_HEADERS = ("ETag", "Retry-After", "WWW-Authenticate", "X-Request-ID", "X-Tiled-Root")
CORS_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
CORS_MAX_AGE = 600


def register_cors(app: Flask, allow_origins: Iterable[str]) -> None:
    """Cross-origin requests from ``allow_origins``, with credentials, as bluesky-httpserver
    allows them: ``*`` means any origin (the request's origin is named in the answer, as
    credentials require). flask-cors answers the preflights."""
    origins = tuple(allow_origins)
    if not origins:
        return
    CORS(
        app,
        origins="*" if "*" in origins else list(origins),
        supports_credentials=True,
        send_wildcard=False,
        allow_headers=list(CORS_ALLOWED_HEADERS),
        expose_headers=list(CORS_EXPOSED_HEADERS),
        methods=list(CORS_METHODS),
        max_age=CORS_MAX_AGE,
        vary_header=True,
    )
