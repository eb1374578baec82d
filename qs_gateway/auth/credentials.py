"""What a request presents to prove who it is."""

from __future__ import annotations

from dataclasses import dataclass

from ..exceptions import BadRequest

API_KEY_COOKIE = "bluesky_httpserver_api_key"

MALFORMED_AUTHORIZATION = (
    "Authorization header must include the authorization type followed by a space and then the "
    "secret, as in 'Bearer SECRET' or 'Apikey SECRET'. "
)


@dataclass(frozen=True)
class Credentials:
    api_key: str | None = None
    api_key_source: str | None = None  # "query", "header" or "cookie"
    bearer_token: str | None = None

    @property
    def empty(self) -> bool:
        return self.api_key is None and self.bearer_token is None


def parse_credentials(authorization: str | None, query_api_key: str | None, cookie_api_key: str | None) -> Credentials:
    """API keys in priority order query > header > cookie; a key wins over a bearer token."""
    header_key = bearer = None
    if authorization:
        scheme, _, secret = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "apikey":
            header_key = secret.strip()
        elif scheme == "bearer":
            bearer = secret.strip()
        else:
            raise BadRequest(MALFORMED_AUTHORIZATION)
    for key, source in ((query_api_key, "query"), (header_key, "header"), (cookie_api_key, "cookie")):
        if key:
            return Credentials(api_key=key, api_key_source=source)
    return Credentials(bearer_token=bearer or None)
