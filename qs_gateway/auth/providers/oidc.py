"""OpenID Connect login at the facility's identity provider (bluesky-httpserver's and Tiled's
``OIDCAuthenticator``; Entra's variant is :class:`EntraAuthenticator`).

A provider is configured either by discovery::

    well_known_uri: https://idp.example.org/.well-known/openid-configuration
    client_id: qs-gateway
    client_secret: ...          # absent for a public client
    audience: qs-gateway        # what the id_token's aud must name (default: client_id)

or by hand, as bluesky-httpserver does (``token_uri``, ``authorization_endpoint``,
``public_keys``, ``redirect_uri``). The gateway sends the browser to the provider with PKCE,
``state`` and ``nonce`` (see :mod:`qs_gateway.auth.sso`), exchanges the code the provider returns
at its token endpoint (Authlib's OAuth 2 client), checks the ``id_token`` (:mod:`.openid`: the
signature with the provider's keys, issuer, audience, expiry, nonce, and ``at_hash`` when
present) and takes the user name from the ``username_claim`` (default ``sub``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import jwt
import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from ...config import ConfigError
from .openid import OpenIDProvider, ProviderUnavailable, TokenRefused

logger = logging.getLogger(__name__)

DEFAULT_SCOPES = ("openid", "profile", "email")


def _scopes(scopes: Any) -> tuple[str, ...]:
    if isinstance(scopes, str):
        scopes = scopes.split()
    if not isinstance(scopes, (list, tuple)) or not all(isinstance(s, str) and s for s in scopes):
        raise ConfigError(f"scopes: expected a list of scope names, got {scopes!r}")
    return tuple(dict.fromkeys(["openid", *scopes]))


def add_query(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` added to its query (those it has already are kept)."""
    present = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    added = urllib.parse.urlencode({k: v for k, v in params.items() if k not in present})
    return f"{url}{'&' if '?' in url else '?'}{added}" if added else url


class OIDCAuthenticator:
    mode = "external"

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str | None = None,
        well_known_uri: str | None = None,
        audience: str | None = None,
        scopes: Sequence[str] | str | None = None,
        username_claim: str = "sub",
        confirmation_message: str | None = None,
        redirect_on_success: str | None = None,
        redirect_on_failure: str | None = None,
        redirect_uri: str | None = None,
        token_uri: str | None = None,
        authorization_endpoint: str | None = None,
        public_keys: Sequence[Mapping[str, Any]] | None = None,
        issuer: str | None = None,
        http_timeout: float = 10,
    ) -> None:
        for name, value in (("client_id", client_id), ("username_claim", username_claim)):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{name}: expected a non-empty string, got {value!r}")
        if well_known_uri is None:  # bluesky-httpserver's form: everything by hand
            for name, value in (("client_secret", client_secret), ("redirect_uri", redirect_uri)):
                if not isinstance(value, str) or not value:
                    raise ConfigError(f"{name}: expected a non-empty string, got {value!r}")
        self.provider = OpenIDProvider(
            well_known_uri=well_known_uri,
            issuer=issuer,
            token_uri=token_uri,
            authorization_endpoint=authorization_endpoint,
            public_keys=public_keys,
            http_timeout=http_timeout,
        )
        self.client_id = client_id
        self.client_secret = client_secret or None
        self.audience = audience or client_id
        # bluesky-httpserver's form asked for "openid" alone
        self.scopes = _scopes(scopes if scopes is not None else DEFAULT_SCOPES if well_known_uri else ("openid",))
        self.username_claim = username_claim
        self.confirmation_message = confirmation_message
        self.redirect_on_success = redirect_on_success
        self.redirect_on_failure = redirect_on_failure
        self.redirect_uri = redirect_uri
        self.http_timeout = float(http_timeout)

    @property
    def discovered(self) -> bool:
        """Configured by discovery (not by hand, as bluesky-httpserver's form is)."""
        return self.provider.well_known_uri is not None

    # -- where the browser starts -----------------------------------------------------------------

    def authorization_url(self, redirect_uri: str | None = None) -> str:
        """The provider's authorization endpoint with the client's standard parameters.

        ``authorization_endpoint`` may be bluesky-httpserver's template, with ``{client_id}``
        and ``{redirect_uri}`` in it; otherwise the standard parameters are added to it.
        """
        endpoint = self.provider.endpoint("authorization_endpoint")
        redirect_uri = self.redirect_uri or redirect_uri or ""
        quote = urllib.parse.quote
        if "{client_id}" in endpoint or "{redirect_uri}" in endpoint:
            return endpoint.replace("{client_id}", quote(self.client_id, safe="")).replace(
                "{redirect_uri}", quote(redirect_uri, safe="")
            )
        wanted = {"response_type": "code", "scope": " ".join(self.scopes), "client_id": self.client_id}
        return add_query(endpoint, {**wanted, "redirect_uri": redirect_uri})

    def authorization_request(self, redirect_uri: str, *, state: str, nonce: str, code_verifier: str) -> str:
        """Where the gateway sends a browser: the authorization URL with ``state``, ``nonce`` and
        the PKCE challenge of ``code_verifier``."""
        challenge = {"code_challenge": create_s256_code_challenge(code_verifier), "code_challenge_method": "S256"}
        return add_query(self.authorization_url(redirect_uri), {"state": state, "nonce": nonce, **challenge})

    # -- the code exchange ------------------------------------------------------------------------

    def exchange(
        self, code: str, redirect_uri: str | None, *, code_verifier: str | None = None, nonce: str | None = None
    ) -> dict[str, Any] | None:
        """The verified id_token claims for an authorization code, or None (logged why);
        ProviderUnavailable (503) if the provider does not answer."""
        if not code:
            return None
        session = OAuth2Session(
            self.client_id,
            self.client_secret,
            token_endpoint_auth_method="client_secret_post" if self.client_secret else "none",
        )
        try:
            tokens = session.fetch_token(
                self.provider.endpoint("token_endpoint"),
                grant_type="authorization_code",
                code=code,
                redirect_uri=self.redirect_uri or redirect_uri,
                timeout=self.http_timeout,
                **({"code_verifier": code_verifier} if code_verifier else {}),
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ProviderUnavailable(f"its token endpoint: {exc}") from None  # 503: a code is not a guess
        except (OAuthError, requests.RequestException, ValueError) as exc:
            logger.warning("OIDC: exchanging the code of client %s failed: %s", self.client_id, exc)
            return None
        finally:
            session.close()
        id_token = tokens.get("id_token") if isinstance(tokens, Mapping) else None
        if not isinstance(id_token, str):
            logger.info("OIDC: the provider answered no id_token")
            return None
        try:
            claims = self.provider.verify(id_token, audience=self.audience, nonce=nonce)
        except TokenRefused as exc:
            logger.info("OIDC id_token refused: %s", exc)
            return None
        if "at_hash" in claims and not _at_hash_matches(id_token, claims["at_hash"], tokens):
            logger.info("OIDC id_token refused: at_hash does not match the access token")
            return None
        return claims

    def user_name(self, claims: Mapping[str, Any] | None) -> str | None:
        name = claims.get(self.username_claim) if claims else None
        return name if isinstance(name, str) and name else None

    def authenticate(self, code: str) -> str | None:
        """bluesky-httpserver's code login: the provider sent the code to the configured
        ``redirect_uri``, without PKCE."""
        return self.user_name(self.exchange(code, self.redirect_uri))


class EntraAuthenticator(OIDCAuthenticator):
    """Microsoft Entra ID (Azure AD), v2.0 endpoints: ``tenant_id`` stands for the discovery
    address, a tenant's id or ``organizations``/``common`` (any tenant: the issuer is then the
    ``{tenantid}`` template, filled in from each token's ``tid``)."""

    AUTHORITY = "https://login.microsoftonline.com"

    def __init__(
        self, *, tenant_id: str | None = None, username_claim: str = "preferred_username", **args: Any
    ) -> None:
        if args.get("well_known_uri") is None:
            if not isinstance(tenant_id, str) or not tenant_id:
                raise ConfigError("tenant_id: expected the Entra tenant's id (or well_known_uri)")
            args["well_known_uri"] = f"{self.AUTHORITY}/{tenant_id}/v2.0/.well-known/openid-configuration"
        super().__init__(username_claim=username_claim, **args)


_HASHES = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}


def _at_hash_matches(id_token: str, at_hash: Any, tokens: Mapping[str, Any]) -> bool:
    """OpenID Connect Core 3.1.3.6: the left half of the access token's hash, base64url-encoded,
    with the hash of the id_token's signing algorithm."""

    access_token = tokens.get("access_token")
    algorithm = str(jwt.get_unverified_header(id_token).get("alg", ""))
    digest = _HASHES.get(algorithm[-3:])
    if not isinstance(access_token, str) or not isinstance(at_hash, str) or digest is None:
        return False
    half = digest(access_token.encode("ascii", "replace")).digest()
    expected = base64.urlsafe_b64encode(half[: len(half) // 2]).rstrip(b"=").decode()
    return hmac.compare_digest(expected, at_hash)
