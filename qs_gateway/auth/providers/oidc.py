"""OpenID Connect login, authorization-code flow.

The browser is sent to ``authorization_endpoint`` by the web client; the identity provider sends
it back to ``redirect_uri`` (``.../api/auth/provider/<name>/code``) with ``?code=``. The gateway
exchanges the code at ``token_uri``, verifies the ``id_token`` against the configured public keys
(JWKs: signature, audience = ``client_id``, expiry; the issuer when ``issuer`` is configured; the
``at_hash`` claim when the token carries one) and takes the user name from ``sub``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from ...config import ConfigError

logger = logging.getLogger(__name__)


class OIDCAuthenticator:
    mode = "external"

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        public_keys: Sequence[Mapping[str, Any]],
        token_uri: str,
        authorization_endpoint: str,
        confirmation_message: str | None = None,
        http_timeout: float = 10,
        issuer: str | None = None,
    ) -> None:
        import jwt

        for name, value in (
            ("client_id", client_id),
            ("client_secret", client_secret),
            ("redirect_uri", redirect_uri),
            ("token_uri", token_uri),
            ("authorization_endpoint", authorization_endpoint),
        ):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{name}: expected a non-empty string, got {value!r}")
        if issuer is not None and (not isinstance(issuer, str) or not issuer):
            raise ConfigError(f"issuer: expected the identity provider's issuer URL, got {issuer!r}")
        if isinstance(public_keys, Mapping) and "keys" in public_keys:  # a whole JWKS document
            public_keys = public_keys["keys"]
        if not isinstance(public_keys, (list, tuple)) or not public_keys:
            raise ConfigError("public_keys: expected a non-empty list of JWKs")
        self.keys: list[tuple[str | None, str, Any]] = []
        for index, jwk in enumerate(public_keys):
            try:
                key = jwt.PyJWK(dict(jwk))
            except (jwt.PyJWKError, jwt.InvalidKeyError, TypeError, ValueError) as exc:
                raise ConfigError(f"public_keys[{index}]: not a usable JWK: {exc}") from None
            self.keys.append((jwk.get("kid"), key.algorithm_name, key.key))
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.token_uri = token_uri
        self.authorization_endpoint = authorization_endpoint
        self.confirmation_message = confirmation_message
        self.http_timeout = float(http_timeout)
        self.issuer = issuer

    def authorization_url(self) -> str:
        """Where a browser starts the sign-in (it adds its own ``state``).

        ``authorization_endpoint`` may be bluesky-httpserver's template, with ``{client_id}``
        and ``{redirect_uri}`` in it; otherwise the standard parameters are added to it.
        """
        endpoint = self.authorization_endpoint
        quote = urllib.parse.quote
        if "{client_id}" in endpoint or "{redirect_uri}" in endpoint:
            return endpoint.replace("{client_id}", quote(self.client_id, safe="")).replace(
                "{redirect_uri}", quote(self.redirect_uri, safe="")
            )
        present = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(endpoint).query))
        wanted = {"response_type": "code", "scope": "openid", "client_id": self.client_id}
        wanted["redirect_uri"] = self.redirect_uri
        added = urllib.parse.urlencode({k: v for k, v in wanted.items() if k not in present})
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{added}"

    def _exchange(self, code: str) -> dict[str, Any]:
        body = urllib.parse.urlencode(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "client_id": self.client_id,
                "client_secret": self.client_secret,
            }
        ).encode()
        request = urllib.request.Request(
            self.token_uri,
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=self.http_timeout) as response:
            return json.loads(response.read())

    def verify_id_token(self, id_token: str) -> dict[str, Any] | None:
        import jwt

        try:
            kid = jwt.get_unverified_header(id_token).get("kid")
        except jwt.PyJWTError:
            return None
        for key_id, algorithm, key in self.keys:
            if kid is not None and key_id is not None and kid != key_id:
                continue
            try:
                return jwt.decode(
                    id_token,
                    key,
                    algorithms=[algorithm],
                    audience=self.client_id,
                    issuer=self.issuer,
                    options={"require": ["exp", "sub", *(["iss"] if self.issuer else [])]},
                )
            except jwt.PyJWTError as exc:
                logger.info("OIDC id_token refused: %s", exc)
        return None

    def authenticate(self, code: str) -> str | None:
        if not code:
            return None
        try:
            tokens = self._exchange(code)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            logger.warning("OIDC: exchanging the code at %s failed: %s", self.token_uri, exc)
            return None
        id_token = tokens.get("id_token") if isinstance(tokens, dict) else None
        claims = self.verify_id_token(id_token) if isinstance(id_token, str) else None
        if claims and "at_hash" in claims and not _at_hash_matches(id_token, claims["at_hash"], tokens):
            logger.info("OIDC id_token refused: at_hash does not match the access token")
            return None
        subject = claims.get("sub") if claims else None
        return subject if isinstance(subject, str) and subject else None


_HASHES = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}


def _at_hash_matches(id_token: str, at_hash: Any, tokens: Mapping[str, Any]) -> bool:
    """OpenID Connect Core 3.1.3.6: the left half of the access token's hash, base64url-encoded,
    with the hash of the id_token's signing algorithm."""
    import jwt

    access_token = tokens.get("access_token")
    algorithm = str(jwt.get_unverified_header(id_token).get("alg", ""))
    digest = _HASHES.get(algorithm[-3:])
    if not isinstance(access_token, str) or not isinstance(at_hash, str) or digest is None:
        return False
    half = digest(access_token.encode("ascii", "replace")).digest()
    expected = base64.urlsafe_b64encode(half[: len(half) // 2]).rstrip(b"=").decode()
    return hmac.compare_digest(expected, at_hash)
