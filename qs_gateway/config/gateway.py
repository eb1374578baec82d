"""The gateway's own settings: the ``gateway`` YAML section and ``QS_GATEWAY_*`` variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import urlsplit

from ..notifications.settings import NOTIFICATIONS_ENV, Target, parse_notifications
from ..redact import redact_url
from .options import TOP_LEVEL, setting
from .parsers import (
    choice,
    number,
    parse_addresses,
    parse_bool,
    parse_method_timeouts,
    parse_rate_limits,
    parse_str,
)


@dataclass(frozen=True)
class ServingSettings:
    """How gunicorn serves the application."""

    bind: str = setting(
        "bind",
        "QS_GATEWAY_BIND",
        "127.0.0.1:60610",
        parse_str,
        "Address gunicorn listens on: host:port or unix:/path/to/socket.",
    )
    workers: int = setting("workers", "QS_GATEWAY_WORKERS", 2, number(int, minimum=1), "gunicorn worker processes.")
    threads: int = setting(
        "threads", "QS_GATEWAY_THREADS", 16, number(int, minimum=1), "Request threads per worker (gthread)."
    )
    log_format: str = setting(
        "log_format", "QS_GATEWAY_LOG_FORMAT", "text", choice("text", "json"), "Log lines as `text` or `json`."
    )


@dataclass(frozen=True)
class RedisSettings:
    """The Redis that all workers and hosts of one gateway share."""

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
        "Redis Sentinels (`host:port` each) that name the master to use; then `redis_url` gives only the scheme, "
        "user, password and database.",
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
        "Redis's password, if it is not in `redis_url`.",
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
        "CA certificates that Redis's (and the Sentinels') TLS certificates are checked against, for `rediss://`; "
        "none: the system's.",
    )
    wait_replicas: int = setting(
        "redis_wait_replicas",
        "QS_GATEWAY_REDIS_WAIT_REPLICAS",
        1,
        number(int, minimum=0),
        "With Sentinels: replicas that must have a new session, API key or principal before it is answered "
        "(Redis `WAIT`); 0: do not wait.",
    )
    wait_timeout: float = setting(
        "redis_wait_timeout",
        "QS_GATEWAY_REDIS_WAIT_TIMEOUT",
        0.25,
        number(float, minimum=0.01),
        "Seconds to wait for those replicas; without their answer the write is answered anyway (with a warning "
        "in the log).",
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


@dataclass(frozen=True)
class ManagerSettings:
    """Talking to RE Manager: the socket pool, timeouts, the breaker and the status cache."""

    pool_size: int = setting(
        "pool_size",
        "QS_GATEWAY_POOL_SIZE",
        4,
        number(int, minimum=1),
        "ZeroMQ sockets to RE Manager per worker process.",
    )
    pool_timeout: float = setting(
        "pool_timeout",
        "QS_GATEWAY_POOL_TIMEOUT",
        1.0,
        number(float, minimum=0.0),
        "Seconds a request waits for a free socket before it is answered 503.",
    )
    timeout_receive: float = setting(
        "timeout_receive",
        "QS_GATEWAY_TIMEOUT_RECEIVE",
        2.0,
        number(float, minimum=0.01),
        "Seconds to wait for RE Manager's reply (then 408).",
    )
    timeout_send: float = setting(
        "timeout_send",
        "QS_GATEWAY_TIMEOUT_SEND",
        0.5,
        number(float, minimum=0.01),
        "Seconds to wait until RE Manager takes a request (then 408; nothing was sent).",
    )
    timeout_receive_bulk: float = setting(
        "timeout_receive_bulk",
        "QS_GATEWAY_TIMEOUT_RECEIVE_BULK",
        5.0,
        number(float, minimum=0.01),
        "Seconds to wait for replies that grow with the facility (queue, history, lists of plans and devices).",
    )
    method_timeouts: Mapping[str, float] = setting(
        "method_timeouts",
        "QS_GATEWAY_METHOD_TIMEOUTS",
        None,
        parse_method_timeouts,
        "Receive timeouts of single methods, e.g. `plans_existing=5,devices_existing=5`.",
        default_factory=lambda: MappingProxyType({}),
    )
    breaker_threshold: int = setting(
        "breaker_threshold",
        "QS_GATEWAY_BREAKER_THRESHOLD",
        3,
        number(int, minimum=1),
        "Consecutive RE Manager timeouts after which requests fail at once.",
    )
    breaker_open_seconds: float = setting(
        "breaker_open_seconds",
        "QS_GATEWAY_BREAKER_OPEN_SECONDS",
        0.5,
        number(float, minimum=0.0),
        "Seconds requests fail at once before one request probes RE Manager again.",
    )
    status_ttl: float = setting(
        "status_ttl",
        "QS_GATEWAY_STATUS_TTL",
        0.4,
        number(float, minimum=0.0),
        "Seconds a fetched RE Manager status is served to all workers (writes invalidate it).",
    )


@dataclass(frozen=True)
class StreamSettings:
    """What RE Manager publishes (console output, status) and the streams that serve it."""

    published_status_max_age: float = setting(
        "published_status_max_age",
        "QS_GATEWAY_PUBLISHED_STATUS_MAX_AGE",
        1.5,
        number(float, minimum=0.0),
        "Seconds the status RE Manager published is served without asking it (it publishes at least once a "
        "second); 0 turns this off.",
    )
    console_stream_length: int = setting(
        "console_stream_length",
        "QS_GATEWAY_CONSOLE_STREAM_LENGTH",
        10_000,
        number(int, minimum=100),
        "Console messages kept in Redis (what `console_output_update` with `ALL` and stream resumes can reach).",
    )
    info_stream_length: int = setting(
        "info_stream_length",
        "QS_GATEWAY_INFO_STREAM_LENGTH",
        1_000,
        number(int, minimum=10),
        "Published status messages kept in Redis for status streams to resume from.",
    )
    ingest_lease_seconds: float = setting(
        "ingest_lease_seconds",
        "QS_GATEWAY_INGEST_LEASE_SECONDS",
        2.0,
        number(float, minimum=0.2),
        "Lease of the one worker that subscribes to RE Manager; another takes over within about this long.",
    )
    stream_limit: int = setting(
        "stream_limit",
        "QS_GATEWAY_STREAM_LIMIT",
        2_000,
        number(int, minimum=0),
        "Open streams (SSE, byte streams, websockets) per worker; each costs about 10 KB and a file descriptor, "
        "no thread. Over it: 503 before the stream starts.",
    )
    stream_queue_length: int = setting(
        "stream_queue_length",
        "QS_GATEWAY_STREAM_QUEUE_LENGTH",
        1_000,
        number(int, minimum=1),
        "Messages buffered for one slow stream consumer before its oldest are dropped.",
    )
    sse_heartbeat_seconds: float = setting(
        "sse_heartbeat_seconds",
        "QS_GATEWAY_SSE_HEARTBEAT_SECONDS",
        15.0,
        number(float, minimum=0.1),
        "Seconds between heartbeat comments on quiet Server-Sent Event streams.",
    )


@dataclass(frozen=True)
class HttpSettings:
    """What the gateway answers over HTTP beyond the API itself."""

    gzip_min_bytes: int = setting(
        "gzip_min_bytes",
        "QS_GATEWAY_GZIP_MIN_BYTES",
        4096,
        number(int, minimum=0),
        "Answers at least this large are gzip-compressed for clients that accept it (0: never).",
    )
    worker_header: bool = setting(
        "worker_header",
        "QS_GATEWAY_WORKER_HEADER",
        False,
        parse_bool,
        "Add `X-Gateway-Worker: host:pid` to every response (to see which worker answered).",
    )
    max_body_bytes: int = setting(
        "max_body_bytes",
        "QS_GATEWAY_MAX_BODY_BYTES",
        64 * 1024 * 1024,
        number(int, minimum=1024),
        "Largest accepted request body (then 413).",
    )
    proxy_hops: int = setting(
        "proxy_hops",
        "QS_GATEWAY_PROXY_HOPS",
        0,
        number(int, minimum=0),
        "Proxies in front of the gateway whose X-Forwarded-For/-Proto/-Host/-Port/-Prefix are trusted.",
    )
    docs: bool = setting(
        "docs", "QS_GATEWAY_DOCS", True, parse_bool, "Serve `/openapi.json` and the Swagger UI page `/docs`."
    )
    ui: bool = setting("ui", "QS_GATEWAY_UI", True, parse_bool, "Serve the control room web page at `/` and `/ui/`.")
    metrics: bool = setting(
        "metrics",
        "QS_GATEWAY_METRICS",
        False,
        parse_bool,
        "Collect Prometheus metrics, served at `/metrics` to the `admin:metrics` scope.",
    )
    metrics_bind: str = setting(
        "metrics_bind",
        "QS_GATEWAY_METRICS_BIND",
        "",
        parse_str,
        "A second address serving only `/metrics`, without credentials (turns metrics on).",
    )
    prometheus: bool = setting(
        "prometheus", None, False, parse_bool, "bluesky-httpserver's switch for metrics.", section="metrics"
    )

    @property
    def metrics_enabled(self) -> bool:
        return bool(self.prometheus or self.metrics or self.metrics_bind)


@dataclass(frozen=True)
class NotificationSettings:
    """Who is told when the queue stops (see :mod:`qs_gateway.notifications`)."""

    targets: tuple[Target, ...] = setting(
        "notifications",
        NOTIFICATIONS_ENV,
        (),
        parse_notifications,
        "URLs that receive events (a YAML list of targets; the variable: the list as JSON).",
        section=TOP_LEVEL,
    )
    manager_silence_seconds: float = setting(
        "manager_silence_seconds",
        "QS_GATEWAY_MANAGER_SILENCE_SECONDS",
        10.0,
        number(float, minimum=2.0),
        "Seconds without a status from RE Manager after which the `manager_unreachable` notification is sent.",
    )


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
