"""Bounds on guessing credentials and on spent refresh tokens (see :mod:`qs_gateway.auth.throttle`)."""

from __future__ import annotations

from dataclasses import dataclass

from .options import setting
from .parsers import number, parse_rate_limits


@dataclass(frozen=True)
class AuthLimitSettings:
    """Bounds on guessing and on spent refresh tokens (see :mod:`qs_gateway.auth.throttle`)."""

    login_failures_per_user: str = setting(
        "login_failures_per_user",
        "QS_GATEWAY_LOGIN_FAILURES_PER_USER",
        "5/minute;30/hour",
        parse_rate_limits,
        "Failed logins allowed per user name, in tiers (`limits` notation, `;`-separated); then 429. Empty: no limit.",
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
        "Failed API-key and token checks allowed per client address, in tiers; then 429. Empty: no limit.",
    )
    refresh_reuse_grace: float = setting(
        "refresh_reuse_grace",
        "QS_GATEWAY_REFRESH_REUSE_GRACE",
        2.0,
        number(float, minimum=0.0),
        "Seconds in which a client may spend its just-rotated refresh token again (its own threads racing) "
        "without ending the session; any other reuse of a spent refresh token ends it.",
    )
