"""Keeping secrets out of logs and messages: API keys, tokens, passwords."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"

# Query parameters whose values are secrets: credentials, the OIDC authorization code and state
# (a code is exchanged for tokens), the device sign-in's codes (a user code lets a person approve
# someone's device) and lock keys (who holds one may unlock the queue).
SECRET_NAMES = frozenset(
    {
        "api_key",
        "apikey",
        "password",
        "token",
        "access_token",
        "refresh_token",
        "secret",
        "client_secret",
        "csrf",
        "code",
        "state",
        "user_code",
        "device_code",
        "lock_key",
    }
)

_SECRET_QUERY = re.compile(r"(?i)(^|[?&])(" + "|".join(sorted(SECRET_NAMES)) + r")=[^&]*")


def redact_url(url: str) -> str:
    """``redis://:pw@host/0`` → ``redis://:***@host/0``; secret query values replaced too."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        credentials, _, host = netloc.rpartition("@")
        user, sep, _password = credentials.partition(":")
        # user:password@ keeps the user; a lone token@ (a password in Redis URLs) is hidden
        netloc = f"{user}:{REDACTED}@{host}" if sep else f"{REDACTED}@{host}"
    return urlunsplit(parts._replace(netloc=netloc, query=redact_query(parts.query)))


def redact_query(query: str) -> str:
    """``a=1&api_key=abc`` → ``a=1&api_key=***``."""
    return _SECRET_QUERY.sub(lambda m: f"{m.group(1)}{m.group(2)}={REDACTED}", query)
