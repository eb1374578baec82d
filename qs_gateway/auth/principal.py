"""Who a request acts for, and what it may do."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Principal:
    username: str  # the identity sent to RE Manager's permission checks
    displayed_name: str  # sent as ``user`` with queue items, locks, functions
    user_group: str  # sent as ``user_group``: chooses the allowed plans and devices
    roles: frozenset[str] = field(default_factory=frozenset)
    scopes: frozenset[str] = field(default_factory=frozenset)
    # how the request proved it: "single_user_key", "api_key", "token" or "anonymous"
    method: str = "anonymous"

    @property
    def is_anonymous(self) -> bool:
        return self.method == "anonymous"
