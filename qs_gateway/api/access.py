"""Who is asking: the credentials of a request, checked against the scope an endpoint needs."""

from __future__ import annotations

from flask import g, request

from ..auth import Credentials, Principal, parse_credentials
from ..auth.credentials import API_KEY_COOKIE
from ..extensions import services

# Scope markers beside real scope names:
PUBLIC = None  # no authentication at all
ANY_PRINCIPAL = ""  # credentials are checked if present, but no scope is required

# The scope set each scope marker requires, made once (the endpoints declare a few dozen).
_REQUIRED: dict[str, frozenset[str]] = {}


def _required(scope: str) -> frozenset[str]:
    required = _REQUIRED.get(scope)
    if required is None:
        required = _REQUIRED[scope] = frozenset({scope}) if scope else frozenset()
    return required


def authorize(scope: str | None, credentials: Credentials | None = None) -> Principal:
    auth = services().auth
    context = g._get_current_object()  # one proxy lookup each instead of several
    if scope is PUBLIC:
        principal = auth.public
    else:
        current = request._get_current_object()
        if credentials is None:
            environ = current.environ
            # the query string and the cookies are parsed only when they could hold a key
            credentials = parse_credentials(
                environ.get("HTTP_AUTHORIZATION"),
                current.args.get("api_key") if "api_key" in environ.get("QUERY_STRING", "") else None,
                current.cookies.get(API_KEY_COOKIE) if "HTTP_COOKIE" in environ else None,
            )
        context.credentials = credentials
        principal = auth.authenticate(credentials, current.remote_addr)
        auth.require(principal, _required(scope))
    context.principal = principal
    return principal
