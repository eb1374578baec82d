"""Turning credentials into a :class:`Principal`, and checking scopes."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from ..errors import Unauthorized
from .credentials import Credentials
from .policies import BasicAPIAccessControl, DefaultResourceAccessControl
from .principal import Principal
from .scopes import PUBLIC_USER, SINGLE_USER

INVALID_API_KEY = "Invalid API key"
INVALID_TOKEN = "Could not validate credentials"


def _repr_list(scopes: Iterable[str]) -> str:
    return repr(sorted(scopes))


class NotEnoughPermissions(Unauthorized):
    def __init__(self, required: Iterable[str], had: Iterable[str]) -> None:
        required = sorted(required)
        super().__init__(
            f"Not enough permissions. Requires scopes {_repr_list(required)}. Request had scopes {_repr_list(had)}",
            headers={"WWW-Authenticate": f'Bearer scope="{" ".join(required)}"'},
        )


class Authenticator:
    """Single-user API key mode and anonymous access."""

    def __init__(
        self,
        *,
        single_user_api_key: str | None,
        allow_anonymous_access: bool,
        api_access: BasicAPIAccessControl | None = None,
        resource_access: DefaultResourceAccessControl | None = None,
    ) -> None:
        self.single_user_api_key = single_user_api_key
        self.allow_anonymous_access = allow_anonymous_access
        self.api_access = api_access or BasicAPIAccessControl()
        self.resource_access = resource_access or DefaultResourceAccessControl()
        self.public = self._principal_for(PUBLIC_USER, "anonymous")
        if not allow_anonymous_access:
            self.public = Principal(
                username=self.public.username,
                displayed_name=self.public.displayed_name,
                user_group=self.public.user_group,
            )
        self.single_user = self._principal_for(SINGLE_USER, "single_user_key")

    def _principal_for(self, username: str, method: str) -> Principal:
        return Principal(
            username=username,
            displayed_name=self.api_access.get_displayed_user_name(username),
            user_group=self.resource_access.get_resource_group(username),
            roles=self.api_access.get_user_roles(username),
            scopes=self.api_access.get_user_scopes(username),
            method=method,
        )

    def authenticate(self, credentials: Credentials) -> Principal:
        if credentials.api_key is not None:
            key = self.single_user_api_key
            if key and hmac.compare_digest(credentials.api_key.encode(), key.encode()):
                return self.single_user
            raise Unauthorized(INVALID_API_KEY, headers={"WWW-Authenticate": "Bearer"})
        if credentials.bearer_token is not None:
            raise Unauthorized(INVALID_TOKEN, headers={"WWW-Authenticate": "Bearer"})
        return self.public

    @staticmethod
    def require(principal: Principal, scopes: frozenset[str]) -> None:
        if not scopes <= principal.scopes:
            raise NotEnoughPermissions(scopes, principal.scopes)
