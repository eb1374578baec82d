"""Scopes and the default roles (bluesky-httpserver's table, so existing role edits keep working)."""

from __future__ import annotations

READ_SCOPES = frozenset(
    {
        "read:status",
        "read:queue",
        "read:history",
        "read:resources",
        "read:config",
        "read:monitor",
        "read:console",
        "read:lock",
        "read:testing",
    }
)

# What operators of an experiment do (roles user, advanced and expert share these).
OPERATOR_WRITES = frozenset(
    {
        "write:queue:edit",
        "write:queue:control",
        "write:manager:control",
        "write:plan:control",
        "write:execute",
        "write:history:edit",
    }
)

WRITE_SCOPES = OPERATOR_WRITES | {
    "write:permissions",
    "write:scripts",
    "write:config",
    "write:lock",
    "write:manager:stop",
    "write:testing",
}

ADMIN_SCOPES = frozenset({"admin:apikeys", "admin:read:principals", "admin:metrics"})

# Reviewed submissions (docs/agents.md): proposing an item and deciding on one.
SUBMIT_SCOPE = "write:queue:submit"
APPROVE_SCOPE = "write:queue:approve"
SUBMISSION_SCOPES = frozenset({SUBMIT_SCOPE, APPROVE_SCOPE})

# Scopes of the gateway's own additions. No role of bluesky-httpserver's table holds them: the
# default roles keep exactly its scope sets (its clients and tests compare them), so an operator
# grants these (``api_access.args.roles.<role>.scopes_add``), or gives the new role ``agent``.
GATEWAY_SCOPES = frozenset({"admin:notifications"}) | SUBMISSION_SCOPES

ALL_SCOPES = READ_SCOPES | WRITE_SCOPES | ADMIN_SCOPES | GATEWAY_SCOPES | {"user:apikeys"}

# A script or AI agent: it reads what an operator sees and proposes items; it changes nothing.
AGENT_SCOPES = frozenset(
    {"read:status", "read:queue", "read:history", "read:resources", "read:monitor", "read:console", SUBMIT_SCOPE}
)

DEFAULT_ROLES: dict[str, frozenset[str]] = {
    "admin": frozenset({"read:status", "user:apikeys"}) | ADMIN_SCOPES,
    "expert": READ_SCOPES
    | OPERATOR_WRITES
    | {"write:permissions", "write:scripts", "write:config", "write:lock", "user:apikeys"},
    "advanced": READ_SCOPES | OPERATOR_WRITES | {"user:apikeys"},
    "user": READ_SCOPES | OPERATOR_WRITES | {"user:apikeys"},
    "observer": READ_SCOPES | {"user:apikeys"},
    "unauthenticated_single_user": READ_SCOPES | WRITE_SCOPES | {"user:apikeys"},
    "unauthenticated_public": frozenset({"read:status"}),
    # not in bluesky-httpserver's table; the roles above keep exactly its scope sets
    "agent": AGENT_SCOPES,
}

SINGLE_USER = "UNAUTHENTICATED_SINGLE_USER"
PUBLIC_USER = "UNAUTHENTICATED_PUBLIC"
BUILT_IN_USERS = {SINGLE_USER: "unauthenticated_single_user", PUBLIC_USER: "unauthenticated_public"}
