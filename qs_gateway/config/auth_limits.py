"""Bounds on guessing credentials and on spent refresh tokens (see :mod:`qs_gateway.auth.throttle`)."""

from __future__ import annotations

from dataclasses import dataclass

from .options import setting
from .parsers import number, parse_rate_limits


@dataclass(frozen=True)
class AuthLimitSettings:
    """Throttling

    Bounds on guessing credentials and on reusing spent refresh tokens; see
    [Sessions, keys and throttling](security.md#sessions-keys-and-throttling).
    """

    login_failures_per_user: str = setting(
        "login_failures_per_user",
        "QS_GATEWAY_LOGIN_FAILURES_PER_USER",
        "5/minute;30/hour",
        parse_rate_limits,
        "Failed logins allowed per user name, in tiers (`;`-separated, `limits` notation: `10/minute`, "
        "`50/2 hours`, ...); the next attempt is answered 429 until the oldest counted failure leaves its "
        "window. Empty: no limit.",
    )
    login_failures_per_address: str = setting(
        "login_failures_per_address",
        "QS_GATEWAY_LOGIN_FAILURES_PER_ADDRESS",
        "30/minute;300/hour",
        parse_rate_limits,
        "Failed logins allowed per client address, in tiers; then 429. Empty: no limit.",
    )
    credential_failures_per_address: str = setting(
        "credential_failures_per_address",
        "QS_GATEWAY_CREDENTIAL_FAILURES_PER_ADDRESS",
        "60/minute;1000/hour",
        parse_rate_limits,
        "Failed API-key and token checks (unknown keys, bad signatures) allowed per client address, in tiers; "
        "then 429 for every API key or token from that address. Empty: no limit.",
    )
    refresh_reuse_grace: float = setting(
        "refresh_reuse_grace",
        "QS_GATEWAY_REFRESH_REUSE_GRACE",
        2.0,
        number(float, minimum=0.0),
        "Seconds in which a client may present its just-spent refresh token again from the same address (its "
        "own threads racing to refresh) and only be refused; any other reuse of a spent refresh token revokes "
        "the session.",
        unit="s",
    )
