"""What the gateway knows of an OpenID provider: its endpoints and its signing keys, and the
checks of the tokens it signs.

Endpoints come from the provider's discovery document (``well_known_uri``), or from the
configuration (``token_uri``, ``authorization_endpoint``, ``public_keys``: bluesky-httpserver's
form). Both are read on first use, in the worker that needs them: nothing is fetched at start-up
or before gunicorn forks.

Keys are fetched from the provider's ``jwks_uri``. A token that names a key the gateway does not
know makes it fetch the keys again (the provider rotated them), but at most once a minute, so a
stream of forged tokens with made-up key ids cannot make the gateway hammer the provider.

An Entra (Azure AD) multi-tenant discovery document names its issuer as a template,
``https://login.microsoftonline.com/{tenantid}/v2.0``: the issuer a token must carry is the
template filled in with the token's own ``tid`` claim.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jwt
import requests

from ...config import ConfigError
from ...exceptions import ServiceUnavailable

logger = logging.getLogger(__name__)

KEYS_REFETCH_SECONDS = 60.0  # at most one fetch of the keys a minute for tokens with unknown key ids
CLOCK_SKEW_SECONDS = 30  # leeway for exp/nbf/iat between the provider's clock and ours
TENANT_TEMPLATE = "{tenantid}"
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


PROVIDER_AWAY_RETRY_SECONDS = 10


class ProviderUnavailable(ServiceUnavailable):
    """The provider's discovery document or keys could not be read (503: try again later)."""

    def __init__(self, reason: str) -> None:
        super().__init__("The identity provider does not answer; try again later", PROVIDER_AWAY_RETRY_SECONDS)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class TokenRefused(Exception):
    """A token that is not valid: its message says why (for the log, not for the client)."""


def _non_empty(name: str, value: Any, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name}: expected a non-empty string, got {value!r}")
    return value


def _parse_keys(public_keys: Any) -> dict[str | None, jwt.PyJWK]:
    if isinstance(public_keys, Mapping) and "keys" in public_keys:  # a whole JWKS document
        public_keys = public_keys["keys"]
    if not isinstance(public_keys, (list, tuple)) or not public_keys:
        raise ConfigError("public_keys: expected a non-empty list of JWKs")
    keys: dict[str | None, jwt.PyJWK] = {}
    for index, jwk in enumerate(public_keys):
        try:
            keys[jwk.get("kid")] = jwt.PyJWK(dict(jwk))
        except (jwt.PyJWKError, jwt.InvalidKeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"public_keys[{index}]: not a usable JWK: {exc}") from None
    return keys


class OpenIDProvider:
    def __init__(
        self,
        *,
        well_known_uri: str | None = None,
        issuer: str | None = None,
        token_uri: str | None = None,
        authorization_endpoint: str | None = None,
        public_keys: Sequence[Mapping[str, Any]] | None = None,
        http_timeout: float = 10,
    ) -> None:
        self.well_known_uri = _non_empty("well_known_uri", well_known_uri, optional=True)
        self.configured_issuer = _non_empty("issuer", issuer, optional=True)
        self.configured = {
            "token_endpoint": _non_empty("token_uri", token_uri, optional=True),
            "authorization_endpoint": _non_empty("authorization_endpoint", authorization_endpoint, optional=True),
        }
        if self.well_known_uri is None:
            for name, value in (("token_uri", token_uri), ("authorization_endpoint", authorization_endpoint)):
                _non_empty(name, value)  # without discovery both are required
            if public_keys is None:
                raise ConfigError("public_keys: expected a non-empty list of JWKs (or well_known_uri for discovery)")
        self.static_keys = _parse_keys(public_keys) if public_keys is not None else None
        self.http_timeout = float(http_timeout)
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._keys_fetched = False
        self._refetched_at = -KEYS_REFETCH_SECONDS  # monotonic time of the last fetch for an unknown key

    # -- discovery -----------------------------------------------------------------------------

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = requests.get(url, timeout=self.http_timeout, headers={"Accept": "application/json"})
            response.raise_for_status()
            document = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise ProviderUnavailable(f"{url}: {exc}") from None
        if not isinstance(document, dict):
            raise ProviderUnavailable(f"{url}: not a JSON object")
        return document

    def metadata(self) -> dict[str, Any]:
        """The discovery document (read once per worker), or the configured endpoints."""
        if self._metadata is None:
            if self.well_known_uri is None:
                document: dict[str, Any] = {"issuer": self.configured_issuer}
            else:
                document = self._get_json(self.well_known_uri)
            # configured values win over discovered ones (a provider behind another address)
            document.update({k: v for k, v in self.configured.items() if v is not None})
            if self.configured_issuer is not None:
                document["issuer"] = self.configured_issuer
            self._metadata = document
        return self._metadata

    def endpoint(self, name: str) -> str:
        value = self.metadata().get(name)
        if not isinstance(value, str) or not value:
            raise ProviderUnavailable(f"the provider names no {name}")
        return value

    # -- keys ----------------------------------------------------------------------------------

    def _fetch_keys(self) -> None:
        document = self._get_json(self.endpoint("jwks_uri"))
        keys: dict[str | None, jwt.PyJWK] = {}
        for jwk in document.get("keys", []):
            if isinstance(jwk, dict) and jwk.get("use", "sig") == "sig":
                try:
                    keys[jwk.get("kid")] = jwt.PyJWK(jwk)
                except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError):
                    continue  # a key type PyJWT cannot use (e.g. for encryption)
        self._keys = keys
        self._keys_fetched = True

    def _key(self, kid: str | None) -> jwt.PyJWK:
        if self.static_keys is not None:
            key = self.static_keys.get(kid) or (self.static_keys.get(None) if kid else None)
            if key is None and len(self.static_keys) == 1 and kid is None:
                key = next(iter(self.static_keys.values()))
            if key is None:
                raise TokenRefused(f"no configured key with kid {kid!r}")
            return key
        with self._lock:
            if not self._keys_fetched:
                self._fetch_keys()
            elif kid not in self._keys and time.monotonic() - self._refetched_at >= KEYS_REFETCH_SECONDS:
                self._refetched_at = time.monotonic()
                logger.info("OIDC: a token names the unknown key %r: fetching the provider's keys again", kid)
                self._fetch_keys()
            key = self._keys.get(kid)
            if key is None and kid is None and len(self._keys) == 1:
                key = next(iter(self._keys.values()))
        if key is None:
            raise TokenRefused(f"the provider has no key with kid {kid!r}")
        return key

    # -- tokens --------------------------------------------------------------------------------

    def expected_issuer(self, unverified: Mapping[str, Any]) -> str | None:
        issuer = self.metadata().get("issuer")
        if isinstance(issuer, str) and TENANT_TEMPLATE in issuer:
            tenant = unverified.get("tid")
            if not isinstance(tenant, str) or not tenant:
                raise TokenRefused("the token names no tenant (tid) for the issuer template")
            return issuer.replace(TENANT_TEMPLATE, tenant)
        return issuer if isinstance(issuer, str) and issuer else None

    def verify(self, token: str, *, audience: str | Sequence[str], nonce: str | None = None) -> dict[str, Any]:
        """The claims of a token the provider signed for ``audience``, checked: signature,
        issuer, audience, expiry, not-before (and ``nonce`` when given). TokenRefused if not."""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"not a JWT: {exc}") from None
        algorithm = header.get("alg")
        if algorithm not in SIGNING_ALGORITHMS and not (self.static_keys and algorithm == "HS256"):
            raise TokenRefused(f"algorithm {algorithm!r} is not accepted")
        key = self._key(header.get("kid"))
        if algorithm != key.algorithm_name:  # the key decides the algorithm, never the token
            raise TokenRefused(f"algorithm {algorithm!r} is not the key's ({key.algorithm_name})")
        issuer = self.expected_issuer(unverified)
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=audience,
                issuer=issuer,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["exp", "sub", *(["iss"] if issuer else [])]},
            )
        except jwt.PyJWTError as exc:
            raise TokenRefused(str(exc)) from None
        if nonce is not None and claims.get("nonce") != nonce:
            raise TokenRefused("the nonce is not the one of this sign-in")
        return claims
