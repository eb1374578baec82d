"""Where the gateway keeps what its workers and hosts share: Redis, alone or behind Sentinels."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from .options import setting
from .parsers import number, parse_addresses, parse_str
from .redact import redact_url


@dataclass(frozen=True)
class RedisSettings:
    """Redis

    The Redis that all workers and hosts of one gateway share, alone or behind Sentinels; see
    [Scaling out](deployment.md#scaling-out).
    """

    url: str = setting(
        "redis_url",
        "QS_GATEWAY_REDIS_URL",
        "redis://127.0.0.1:6379/0",
        parse_str,
        "Redis shared by all workers and hosts of one gateway; `rediss://` for TLS.",
    )
    prefix: str = setting(
        "redis_prefix",
        "QS_GATEWAY_REDIS_PREFIX",
        "qs_gateway",
        parse_str,
        "Prefix of every Redis key; give each gateway (each RE Manager) its own.",
    )
    sentinels: tuple[tuple[str, int], ...] = setting(
        "redis_sentinels",
        "QS_GATEWAY_REDIS_SENTINELS",
        (),
        parse_addresses,
        "Redis Sentinels that name the master to use: a YAML list of `host:port`, comma-separated in the "
        "variable. With them, `redis_url` gives only the scheme, user, password and database. See "
        "[Redis that fails over](deployment.md#redis-that-fails-over-sentinel).",
    )
    service_name: str = setting(
        "redis_service_name",
        "QS_GATEWAY_REDIS_SERVICE_NAME",
        "mymaster",
        parse_str,
        "The master's name in the Sentinels' configuration (`sentinel monitor <name> ...`).",
    )
    password: str = setting(
        "redis_password",
        "QS_GATEWAY_REDIS_PASSWORD",
        "",
        parse_str,
        "Redis's password (master and replicas), if it is not in `redis_url`.",
    )
    sentinel_password: str = setting(
        "redis_sentinel_password",
        "QS_GATEWAY_REDIS_SENTINEL_PASSWORD",
        "",
        parse_str,
        "The Sentinels' own password (their `requirepass`), if they have one.",
    )
    tls_ca_file: str = setting(
        "redis_tls_ca_file",
        "QS_GATEWAY_REDIS_TLS_CA_FILE",
        "",
        parse_str,
        "CA certificates that Redis's and the Sentinels' TLS certificates are checked against (`rediss://`); "
        "host names are checked, so with Sentinels the certificates name the addresses the Sentinels give out.",
        shown_default="the system's",
    )
    wait_replicas: int = setting(
        "redis_wait_replicas",
        "QS_GATEWAY_REDIS_WAIT_REPLICAS",
        1,
        number(int, minimum=0),
        "With Sentinels: replicas that must have a new session, API key, principal, revocation or signing key "
        "before it is answered (Redis `WAIT`); `0`: do not wait.",
    )
    wait_timeout: float = setting(
        "redis_wait_timeout",
        "QS_GATEWAY_REDIS_WAIT_TIMEOUT",
        0.25,
        number(float, minimum=0.01),
        "Seconds to wait for those replicas; without their answer the write is answered anyway, with a warning "
        "in the log.",
        unit="s",
    )

    @property
    def display(self) -> str:
        """Where Redis is, for messages and logs (no password)."""
        if not self.sentinels:
            return redact_url(self.url)
        scheme = urlsplit(self.url).scheme or "redis"
        hosts = ",".join(f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in self.sentinels)
        return f"{scheme}+sentinel://{hosts}/{self.service_name}"

    def __str__(self) -> str:
        return self.display
