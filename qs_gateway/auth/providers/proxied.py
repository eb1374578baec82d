"""Access tokens issued by the OpenID provider itself (Tiled's and bluesky-httpserver's
``ProxiedOIDCAuthenticator``).

Clients sign in at the provider directly (a script with the device flow of the public client
``device_flow_client_id``, a web application with its own login) and send the provider's access
token as ``Authorization: Bearer``. The gateway only checks it: the provider's signature (keys
from discovery, fetched again on an unknown key id at most once a minute), issuer, audience,
expiry and not-before. The user name is the ``username_claim`` (default ``sub``); the roles are
the user's roles in the API-access policy (if it knows the user) and the roles that
``role_mapping`` gives the groups in ``roles_claim`` (default ``groups``), e.g. Entra group
object ids. A token that gives no role at all is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...config import ConfigError
from .oidc import DEFAULT_SCOPES, _scopes
from .openid import OpenIDProvider, TokenRefused


def _role_mapping(mapping: Any) -> dict[str, frozenset[str]]:
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"role_mapping: expected a mapping of group -> role(s), got {mapping!r}")
    parsed = {}
    for group, roles in mapping.items():
        roles = [roles] if isinstance(roles, str) else roles
        if not isinstance(roles, (list, tuple)) or not all(isinstance(r, str) and r for r in roles):
            raise ConfigError(f"role_mapping.{group}: expected a role name or a list of them, got {roles!r}")
        parsed[str(group)] = frozenset(roles)
    return parsed


class ProxiedOIDCAuthenticator:
    mode = "proxied"

    def __init__(
        self,
        *,
        audience: str | Sequence[str],
        client_id: str,
        well_known_uri: str,
        device_flow_client_id: str | None = None,
        scopes: Sequence[str] | str | None = None,
        username_claim: str = "sub",
        roles_claim: str = "groups",
        role_mapping: Mapping[str, Any] | None = None,
        confirmation_message: str | None = None,
        http_timeout: float = 10,
    ) -> None:
        for name, value in (
            ("client_id", client_id),
            ("well_known_uri", well_known_uri),
            ("username_claim", username_claim),
            ("roles_claim", roles_claim),
        ):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{name}: expected a non-empty string, got {value!r}")
        if not audience or not isinstance(audience, (str, list, tuple)):
            raise ConfigError(f"audience: expected the audience the provider's tokens name, got {audience!r}")
        self.provider = OpenIDProvider(well_known_uri=well_known_uri, http_timeout=http_timeout)
        self.audience = audience if isinstance(audience, str) else list(audience)
        self.client_id = client_id
        self.device_flow_client_id = device_flow_client_id or client_id
        self.scopes = _scopes(scopes if scopes is not None else DEFAULT_SCOPES)
        self.username_claim = username_claim
        self.roles_claim = roles_claim
        self.role_mapping = _role_mapping(role_mapping)
        self.confirmation_message = confirmation_message

    def client_settings(self) -> dict[str, Any]:
        """What a client needs to get a token from the provider (``/api/auth/providers``)."""
        return {
            "well_known_uri": self.provider.well_known_uri,
            "client_id": self.client_id,
            "device_flow_client_id": self.device_flow_client_id,
            "audience": self.audience,
            "scopes": list(self.scopes),
        }

    def claims(self, access_token: str) -> dict[str, Any] | None:
        """The checked claims of the provider's access token, or None. ProviderUnavailable
        (503) if the provider's keys cannot be read: a valid token is not a failed guess."""
        try:
            return self.provider.verify(access_token, audience=self.audience)
        except TokenRefused:
            return None

    def user_name(self, claims: Mapping[str, Any]) -> str | None:
        name = claims.get(self.username_claim)
        return name if isinstance(name, str) and name else None

    def mapped_roles(self, claims: Mapping[str, Any]) -> frozenset[str]:
        groups = claims.get(self.roles_claim)
        groups = [groups] if isinstance(groups, str) else groups if isinstance(groups, list) else []
        roles: set[str] = set()
        for group in groups:
            roles |= self.role_mapping.get(str(group), frozenset())
        return frozenset(roles)

    def authenticate(self, access_token: str) -> str | None:
        claims = self.claims(access_token)
        return self.user_name(claims) if claims else None
