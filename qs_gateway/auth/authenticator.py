"""Turning credentials into a :class:`Principal`, and checking scopes.

Without login providers the gateway is in single-user mode: one API key (compared in constant
time) acts as ``UNAUTHENTICATED_SINGLE_USER`` and nothing needs Redis. With providers, API keys
and tokens belong to principals kept in Redis (:mod:`.state`); the scopes of a token or key are
computed from the API-access policy on every request, so a role edit takes effect at once, and
an access token is honoured only while its login session lives (:mod:`.sessions`).

Failed checks of API keys and tokens are counted per client address (:mod:`.throttle`).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import replace

from ..exceptions import Unauthorized
from .credentials import Credentials
from .policies import BasicAPIAccessControl, DefaultResourceAccessControl
from .principal import Principal
from .providers import PROXIED, Provider
from .scopes import PUBLIC_USER, SINGLE_USER
from .sessions import Sessions
from .state import ApiKeyRecord, AuthState, normalize_uuid
from .throttle import Throttle
from .tokens import TokenExpired, TokenInvalid, Tokens

INVALID_API_KEY = "Invalid API key"
INVALID_TOKEN = "Could not validate credentials"
TOKEN_EXPIRED = "Access token has expired. Refresh token."
SESSION_EXPIRED = "Session has expired. Please re-authenticate."
NOT_AUTHORIZED = "User is not authorized to access the server"
INHERIT = "inherit"


def _repr_list(scopes: Iterable[str]) -> str:
    return repr(sorted(scopes))


class NotEnoughPermissions(Unauthorized):
    def __init__(self, required: Iterable[str], had: Iterable[str]) -> None:
        required = sorted(required)
        super().__init__(
            f"Not enough permissions. Requires scopes {_repr_list(required)}. Request had scopes {_repr_list(had)}",
            headers={"WWW-Authenticate": f'Bearer scope="{" ".join(required)}"'},
        )


class BadCredentials(Unauthorized):
    """An API key or token that is not one (a guess, or garbage): counted against the address;
    an expired or revoked credential is not."""


def unauthorized(detail: str, kind: type[Unauthorized] = Unauthorized) -> Unauthorized:
    return kind(detail, headers={"WWW-Authenticate": "Bearer"})


def key_scopes(stored: Iterable[str], principal_scopes: frozenset[str]) -> frozenset[str]:
    """What a key may do: its stored scopes within the principal's current ones; ``inherit``
    stands for all of the principal's current scopes."""
    allowed = set(stored) & (principal_scopes | {INHERIT})
    if INHERIT in allowed:
        allowed = (allowed - {INHERIT}) | principal_scopes
    return frozenset(allowed)


class Authenticator:
    def __init__(
        self,
        *,
        single_user_api_key: str | None,
        allow_anonymous_access: bool,
        api_access: BasicAPIAccessControl | None = None,
        resource_access: DefaultResourceAccessControl | None = None,
        providers: Mapping[str, Provider] | None = None,
        state: AuthState | None = None,
        tokens: Tokens | None = None,
        sessions: Sessions | None = None,
        throttle: Throttle,
    ) -> None:
        self.providers = dict(providers or {})
        # Single-user mode ends as soon as any login provider is configured.
        self.single_user_api_key = None if self.providers else single_user_api_key
        self.allow_anonymous_access = allow_anonymous_access
        self.api_access = api_access or BasicAPIAccessControl()
        self.resource_access = resource_access or DefaultResourceAccessControl()
        self.state = state
        self.tokens = tokens
        self.sessions = sessions
        self.throttle = throttle
        self.public = self.principal_for(PUBLIC_USER, method="anonymous")
        if not allow_anonymous_access:
            self.public = Principal(
                username=self.public.username,
                displayed_name=self.public.displayed_name,
                user_group=self.public.user_group,
            )
        self.single_user = self.principal_for(SINGLE_USER, method="single_user_key")

    @property
    def single_user_mode(self) -> bool:
        return not self.providers

    def principal_for(
        self,
        username: str,
        *,
        method: str,
        uuid: str | None = None,
        identities: tuple[tuple[str, str], ...] = (),
        key: ApiKeyRecord | None = None,
        session: str | None = None,
    ) -> Principal:
        """A principal the API-access policy knows: its roles, and its scopes (within the key's)."""
        scopes = self.api_access.get_user_scopes(username)
        if key is not None:
            scopes = key_scopes(key.scopes, scopes)
        return replace(
            self._principal(username, method=method, uuid=uuid, identities=identities, key=key, session=session),
            displayed_name=self.api_access.get_displayed_user_name(username),
            roles=self.api_access.get_user_roles(username),
            scopes=scopes,
        )

    def _principal(
        self,
        username: str,
        *,
        method: str,
        uuid: str | None,
        identities: tuple[tuple[str, str], ...],
        key: ApiKeyRecord | None,
        session: str | None,
    ) -> Principal:
        """A principal without roles or scopes: what every principal of a request has."""
        return Principal(
            username=username,
            displayed_name=username,
            user_group=self.resource_access.get_resource_group(username),
            method=method,
            uuid=uuid,
            identities=identities,
            api_key_first_eight=key.first_eight if key else None,
            api_key_scopes=key.scopes if key else None,
            session=session,
        )

    def username_of(self, identities: Iterable[tuple[str, str]]) -> str | None:
        """The first identity of a configured provider that the API-access policy knows."""
        identities = list(identities)
        for provider, identity in identities:
            if provider in self.providers and self.api_access.is_user_known(identity):
                return identity
        return None

    def principal_of_record(
        self,
        uuid: str,
        identities: Iterable[tuple[str, str]],
        *,
        method: str,
        key: ApiKeyRecord | None = None,
        session: str | None = None,
    ) -> Principal:
        """A logged-in principal; one that the policy no longer knows has no scopes."""
        identities = tuple((p, i) for p, i in identities if p in self.providers)
        username = self.username_of(identities)
        if username is None:
            name = identities[0][1] if identities else uuid
            return self._principal(name, method=method, uuid=uuid, identities=identities, key=key, session=session)
        return self.principal_for(username, method=method, uuid=uuid, identities=identities, key=key, session=session)

    def authenticate(self, credentials: Credentials, address: str | None = None) -> Principal:
        """The principal of ``credentials`` sent from client ``address`` (None: not throttled)."""
        if credentials.empty:
            return self.public
        self.throttle.before_credentials(address)
        try:
            if credentials.api_key is not None:
                return self._of_api_key(credentials.api_key)
            return self._of_access_token(credentials.bearer_token)
        except BadCredentials:
            self.throttle.credentials_failed(address)
            raise

    def _of_api_key(self, secret: str) -> Principal:
        if self.single_user_mode:
            key = self.single_user_api_key
            if key and hmac.compare_digest(secret.encode(), key.encode()):
                return self.single_user
            raise unauthorized(INVALID_API_KEY, BadCredentials)
        used = self.state.use_api_key(secret)
        if used is None:
            raise unauthorized(INVALID_API_KEY, BadCredentials)
        record, identities = used
        return self.principal_of_record(record.principal, identities, method="api_key", key=record)

    def _of_access_token(self, token: str) -> Principal:
        if self.single_user_mode:
            raise unauthorized(INVALID_TOKEN, BadCredentials)
        try:
            claims = self.tokens.decode(token, "access")
        except TokenExpired:
            raise unauthorized(TOKEN_EXPIRED) from None
        except TokenInvalid:
            principal = self._of_provider_token(token)
            if principal is None:
                raise unauthorized(INVALID_TOKEN, BadCredentials) from None
            return principal
        principal, session = str(claims["sub"]), normalize_uuid(str(claims["sid"]))
        if session is None:
            raise unauthorized(INVALID_TOKEN, BadCredentials)
        if not self.sessions.alive(session, principal):
            raise unauthorized(SESSION_EXPIRED)
        identities = [(i.get("idp"), i.get("id")) for i in claims.get("ids", []) if isinstance(i, dict)]
        return self.principal_of_record(principal, identities, method="token", session=session)

    def _of_provider_token(self, token: str) -> Principal | None:
        """The principal of an access token a proxied OpenID provider signed, or None.

        Its roles: the policy's roles of the user, and those its groups are mapped to; its
        scopes: those of its roles (in the policy's role definitions)."""
        for provider in self.providers.values():
            if provider.mode != PROXIED:
                continue
            authenticator = provider.authenticator
            claims = authenticator.claims(token)
            username = authenticator.user_name(claims) if claims else None
            if username is None:
                continue
            roles = self.api_access.get_user_roles(username) | authenticator.mapped_roles(claims)
            if not roles and not self.api_access.is_user_known(username):
                raise unauthorized(NOT_AUTHORIZED)
            scopes = set(self.api_access.get_user_scopes(username))
            for role in roles:
                scopes |= getattr(self.api_access, "roles", {}).get(role, frozenset())
            principal = self._principal(
                username,
                method="provider_token",
                uuid=None,
                identities=((provider.name, username),),
                key=None,
                session=None,
            )
            return replace(
                principal,
                displayed_name=self.api_access.get_displayed_user_name(username),
                roles=frozenset(roles),
                scopes=frozenset(scopes),
            )
        return None

    @staticmethod
    def require(principal: Principal, scopes: frozenset[str]) -> None:
        if not scopes <= principal.scopes:
            raise NotEnoughPermissions(scopes, principal.scopes)
