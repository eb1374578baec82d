"""Who a request acts for, and what it may do."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Principal:
    username: str  # the identity sent to RE Manager's permission checks
    displayed_name: str  # sent as ``user`` with queue items, locks, functions
    user_group: str  # sent as ``user_group``: chooses the allowed plans and devices
    roles: frozenset[str] = field(default_factory=frozenset)
    scopes: frozenset[str] = field(default_factory=frozenset)  # what this request may do
    # how the request proved it: "single_user_key", "api_key", "token",
    # "provider_token" (an OpenID provider's own access token) or "anonymous"
    method: str = "anonymous"
    uuid: str | None = None  # hex uuid of the principal kept in Redis (logged-in users only)
    identities: tuple[tuple[str, str], ...] = ()  # (provider, id) of the configured providers
    api_key_first_eight: str | None = None  # the API key the request used (provider mode)
    api_key_scopes: tuple[str, ...] | None = None  # that key's stored scopes, e.g. ("inherit",)
    session: str | None = None  # hex uuid of the login session of the request's access token

    @property
    def is_anonymous(self) -> bool:
        return self.method == "anonymous"
