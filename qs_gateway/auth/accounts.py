"""What the ``/api/auth`` endpoints do: logins, sessions, API keys and principal records.

Every text a client may look for is bluesky-httpserver's. All of it needs login providers and
Redis; in single-user mode these operations answer 400 with an explanation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..exceptions import BadRequest, NotFound
from .authenticator import INHERIT, INVALID_TOKEN, NOT_AUTHORIZED, SESSION_EXPIRED, Authenticator, unauthorized
from .principal import Principal
from .providers import EXTERNAL, PASSWORD, Provider
from .sessions import Spent
from .state import ApiKeyRecord, dashed, iso, normalize_uuid
from .tokens import TokenExpired, TokenInvalid, new_token_id

INCORRECT_LOGIN = "Incorrect username or password"
EXTERNAL_FAILURE = "Authentication failure"
NO_API_KEY = "No API key was provided with this request."
NOT_AUTHENTICATED = "Not authenticated: this request needs credentials"
SINGLE_USER_MODE = (
    "Not available in single-user mode: logins, sessions and API keys need authentication providers "
    "(authentication.providers in the configuration)"
)


class Accounts:
    def __init__(self, auth: Authenticator, session_max_age: float) -> None:
        self.auth = auth
        self.session_max_age = session_max_age

    @staticmethod
    def _caller(principal: Principal) -> Principal:
        if principal.is_anonymous:
            raise unauthorized(NOT_AUTHENTICATED)
        return principal

    def _require_provider_mode(self) -> None:
        if self.auth.single_user_mode:
            raise BadRequest(SINGLE_USER_MODE)

    def _provider(self, name: str, mode: str) -> Provider:
        provider = self.auth.providers.get(name)
        if provider is None or provider.mode != mode:
            # bluesky-httpserver has a route per provider and mode: anything else is no route
            raise NotFound("Not Found")
        return provider

    # -- logins and sessions -------------------------------------------------------------------

    def password_login(self, provider_name: str, username: str, password: str, address: str | None) -> dict[str, Any]:
        provider = self._provider(provider_name, PASSWORD)
        username = username.strip()
        throttle = self.auth.throttle
        throttle.before_login(username, address)
        user = provider.authenticate(username, password)
        if user is None:
            throttle.login_failed(username, address)
            raise unauthorized(INCORRECT_LOGIN)
        tokens = self._tokens(*self._start_session(provider.name, user), as_float=True)
        throttle.login_succeeded(username)
        return tokens

    def has_provider(self, name: str, mode: str) -> bool:
        provider = self.auth.providers.get(name)
        return provider is not None and provider.mode == mode

    def external_provider(self, name: str) -> Provider:
        return self._provider(name, EXTERNAL)

    def sign_in(self, provider: str, user: str) -> dict[str, Any]:
        """A new session of ``user`` (whom ``provider`` vouched for): tokens as a login answers."""
        return self._tokens(*self._start_session(provider, user), as_float=True)

    def external_sign_in(self, provider: str, user: str) -> str:
        """A new session of ``user``: the external flow's answer, the refresh token alone."""
        _, session, refresh_token_id = self._start_session(provider, user)
        return self.auth.tokens.refresh_token(session, refresh_token_id)

    def code_login(self, provider_name: str, code: str, address: str | None) -> str:
        """The external flow's answer is the refresh token alone (a bare JSON string)."""
        provider = self._provider(provider_name, EXTERNAL)
        self.auth.throttle.before_login(None, address)
        user = provider.authenticate(code)
        if user is None:
            self.auth.throttle.login_failed(None, address)
            raise unauthorized(EXTERNAL_FAILURE)
        return self.external_sign_in(provider.name, user)

    def _start_session(self, provider: str, user: str) -> tuple[Principal, str, str]:
        """The principal, its new session and the id of the session's first refresh token."""
        if not self.auth.api_access.is_user_known(user):
            raise unauthorized(NOT_AUTHORIZED)
        state = self.auth.state
        principal_uuid = state.principal_for_identity(provider, user)
        state.record_login(principal_uuid, provider, user)
        refresh_token_id = new_token_id()
        session = state.create_session(principal_uuid, self.session_max_age, refresh_token_id)
        state.purge_if_due()
        return self._principal(principal_uuid, method="token"), session.uuid, refresh_token_id

    def _principal(self, principal_uuid: str, *, method: str) -> Principal:
        identities = [(p, i) for p, i, _ in self.auth.state.identities(principal_uuid)]
        return self.auth.principal_of_record(principal_uuid, identities, method=method)

    def _tokens(self, principal: Principal, session: str, refresh_token_id: str, *, as_float: bool) -> dict[str, Any]:
        tokens = self.auth.tokens
        number = float if as_float else int  # login answers 900.0, refresh 900 (as the reference)
        return {
            "access_token": tokens.access_token(principal.uuid, principal.scopes, principal.identities, session),
            "expires_in": number(tokens.access_max_age),
            "refresh_token": tokens.refresh_token(session, refresh_token_id),
            "refresh_token_expires_in": number(tokens.refresh_max_age),
            "token_type": "bearer",
        }

    def refresh(self, refresh_token: str, address: str | None) -> dict[str, Any]:
        """New tokens for the session; the refresh token is spent (see :mod:`.sessions`)."""
        self._require_provider_mode()
        throttle = self.auth.throttle
        throttle.before_credentials(address)
        try:
            claims = self.auth.tokens.decode(refresh_token, "refresh")
        except TokenExpired:
            raise unauthorized(SESSION_EXPIRED) from None
        except TokenInvalid:
            throttle.credentials_failed(address)
            raise unauthorized(INVALID_TOKEN) from None
        session_uuid = normalize_uuid(str(claims["sid"]))
        session = self.auth.state.session(session_uuid) if session_uuid else None
        if session is None or not session.valid:
            raise unauthorized(SESSION_EXPIRED)
        principal = self._principal(session.principal, method="token")
        if self.auth.username_of(principal.identities) is None:
            raise unauthorized(NOT_AUTHORIZED)
        next_id = new_token_id()
        spent = self.auth.sessions.spend_refresh_token(session.uuid, str(claims["jti"]), next_id, address)
        if spent is not Spent.SPENT:
            raise unauthorized(SESSION_EXPIRED)  # as for a revoked session: nothing is told about theft
        return self._tokens(principal, session.uuid, next_id, as_float=False)

    def revoke_session(self, principal: Principal, session_id: str) -> dict[str, Any]:
        self._caller(principal)
        self._require_provider_mode()
        session_uuid = normalize_uuid(session_id)
        session = self.auth.state.session(session_uuid) if session_uuid else None
        if session is None or principal.uuid is None or session.principal != principal.uuid:
            raise NotFound(f"Session {session_id} does not exist or belongs to another principal")
        self.auth.sessions.revoke(session.uuid)
        return {"success": True, "msg": ""}

    def logout(self, principal: Principal) -> None:
        """A logout with an access token ends the token's session: its tokens stop working."""
        if principal.session is not None:
            self.auth.sessions.revoke(principal.session)

    # -- API keys ------------------------------------------------------------------------------

    @staticmethod
    def scopes_for_new_key(
        owner_scopes: frozenset[str], source: Sequence[str] | None, requested: Sequence[str] | None
    ) -> list[str]:
        """The scopes stored with a new key of a principal whose scopes are ``owner_scopes``, made
        with credentials whose API key (if any) has the stored scopes ``source``.

        A key made with a key of fixed scopes may have at most those, whoever it is for;
        otherwise at most the owner's current scopes. ``inherit`` (or nothing requested) follows
        the credentials: from a key of fixed scopes it means those scopes (within the owner's),
        from anything else it stays ``inherit``.
        """
        fixed_source = source is not None and INHERIT not in source
        allowed = set(owner_scopes) & set(source) if fixed_source else set(owner_scopes)
        if requested is None or INHERIT in requested:
            return sorted(allowed) if fixed_source else [INHERIT]
        if not set(requested) <= allowed | {INHERIT}:
            raise BadRequest(
                f"Requested scopes {list(requested)} must be a subset of the allowed principal's scopes "
                f"{sorted(allowed)}."
            )
        return list(requested)

    def create_api_key(
        self,
        issuer: Principal,
        *,
        expires_in: float | None,
        scopes: Sequence[str] | None,
        note: str | None,
        for_principal: str | None = None,
    ) -> dict[str, Any]:
        """A key of ``for_principal`` (an administrator's request) or of the issuer, bounded by
        the owner's scopes and by the issuer's API key, if it used one."""
        self._require_provider_mode()
        if for_principal is not None:
            owner = self.known_principal(for_principal)
            owner_scopes = self._principal(owner, method="token").scopes
        elif issuer.uuid is None:
            raise unauthorized(NOT_AUTHORIZED)
        else:
            owner, owner_scopes = issuer.uuid, issuer.scopes
        stored = self.scopes_for_new_key(owner_scopes, issuer.api_key_scopes, scopes)
        secret, record = self.auth.state.create_api_key(owner, stored, expires_in, note)
        return {**record.info(), "secret": secret}

    def api_key_info(self, principal: Principal) -> dict[str, Any]:
        if principal.method == "single_user_key":
            raise BadRequest(SINGLE_USER_MODE)
        if principal.api_key_first_eight is None:
            raise unauthorized(NO_API_KEY)
        record = self._key_of(principal)
        if record is None:
            raise unauthorized("Invalid API key")
        return record.info()

    def _key_of(self, principal: Principal) -> ApiKeyRecord | None:
        for record in self.auth.state.principal_record(principal.uuid)["api_keys"]:
            if record.first_eight == principal.api_key_first_eight:
                return record
        return None

    def delete_api_key(self, principal: Principal, first_eight: str) -> dict[str, Any]:
        self._require_provider_mode()
        if principal.uuid is None or not self.auth.state.delete_api_key(principal.uuid, first_eight):
            raise NotFound(f"API key {first_eight!r} does not exist or belongs to another principal")
        return {"success": True, "msg": ""}

    # -- principal records ---------------------------------------------------------------------

    def known_principal(self, principal_id: str) -> str:
        self._require_provider_mode()
        principal_uuid = normalize_uuid(principal_id)
        if principal_uuid is None or not self.auth.state.principal_exists(principal_uuid):
            raise NotFound(f"Principal {principal_id} does not exist")
        return principal_uuid

    def principal_info(self, principal_uuid: str, *, api_key_scopes: Sequence[str] | None = None) -> dict[str, Any]:
        record = self.auth.state.principal_record(principal_uuid)
        principal = self.auth.principal_of_record(
            principal_uuid, [(p, i) for p, i, _ in record["identities"]], method="token"
        )
        return {
            "uuid": dashed(principal_uuid),
            "type": "user",
            "identities": [
                {"id": identity, "provider": provider, "latest_login": iso(latest)}
                for provider, identity, latest in record["identities"]
            ],
            "api_keys": [key.info() for key in record["api_keys"]],
            "sessions": [session.info() for session in record["sessions"]],
            "latest_activity": iso(record["latest_activity"]),
            "roles": sorted(principal.roles),
            "scopes": sorted(principal.scopes),
            "api_key_scopes": list(api_key_scopes) if api_key_scopes is not None else None,
        }

    def whoami(self, principal: Principal) -> dict[str, Any]:
        if self._caller(principal).uuid is None:
            return self._built_in_principal(principal)
        return self.principal_info(principal.uuid, api_key_scopes=principal.api_key_scopes)

    @staticmethod
    def _built_in_principal(principal: Principal) -> dict[str, Any]:
        """The single-user principal has no record: it is described, not looked up."""
        return {
            "uuid": None,
            "type": "user",
            "identities": [
                {"id": identity, "provider": provider, "latest_login": None}
                for provider, identity in principal.identities or (("__anonymous__", principal.username),)
            ],
            "api_keys": [],
            "sessions": [],
            "latest_activity": None,
            "roles": sorted(principal.roles),
            "scopes": sorted(principal.scopes),
            "api_key_scopes": None,
        }

    def principals(self) -> list[dict[str, Any]]:
        self._require_provider_mode()
        return [self.principal_info(u) for u in self.auth.state.principal_uuids()]
