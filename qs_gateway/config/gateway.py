"""The gateway's own settings: the ``gateway`` YAML section and ``QS_GATEWAY_*`` variables
(those of Redis are in :mod:`.redis`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ..notifications.settings import NOTIFICATIONS_ENV, Target, parse_notifications
from .options import TOP_LEVEL, setting
from .parsers import (
    choice,
    number,
    parse_bool,
    parse_method_timeouts,
    parse_rate_limits,
    parse_str,
    separated_list,
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
    # Slow clients (see qs_gateway.serving.worker): what a client may take of a worker's time.
    header_timeout: float = setting(
        "header_timeout",
        "QS_GATEWAY_HEADER_TIMEOUT",
        5.0,
        number(float, minimum=0.1),
        "Seconds a client has to send a request's line and headers (from the connection, or from the first byte "
        "of the next request on a kept-alive one); then 408 and the connection is closed.",
    )
    body_timeout: float = setting(
        "body_timeout",
        "QS_GATEWAY_BODY_TIMEOUT",
        5.0,
        number(float, minimum=0.1),
        "Seconds a request body may keep the gateway waiting, plus one second for every `body_min_rate` bytes "
        "received; then 408 and the connection is closed.",
    )
    body_min_rate: int = setting(
        "body_min_rate",
        "QS_GATEWAY_BODY_MIN_RATE",
        1024,
        number(int, minimum=1),
        "Bytes per second a slow request body must keep up to extend its deadline.",
    )
    reserved_threads: int = setting(
        "reserved_threads",
        "QS_GATEWAY_RESERVED_THREADS",
        4,
        number(int, minimum=0),
        "Threads of each worker kept for requests that have arrived whole: at most `threads - reserved_threads` "
        "(at least 1) wait for request bodies at a time; more are answered 503.",
    )


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
        "Seconds requests fail at once before one request probes RE Manager again, while RE Manager takes "
        "requests but does not answer them (while it takes no connections, each request tries one and "
        "fails at once if refused).",
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
    test_endpoints: bool = setting(
        "test_endpoints",
        "QS_GATEWAY_TEST_ENDPOINTS",
        True,
        parse_bool,
        "Serve `/api/test/server/sleep` and `/api/test/manager/kill` (clients' test suites use them); `0` in "
        "production.",
    )
    trusted_hosts: tuple[str, ...] = setting(
        "trusted_hosts",
        "QS_GATEWAY_TRUSTED_HOSTS",
        (),
        separated_list(None),
        "Host names the gateway is reached by (`X-Tiled-Root` names one of them; white-space separated in the "
        "variable).",
    )
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


@dataclass(frozen=True)
class SubmissionSettings:
    """Reviewed submissions and idempotency keys (see docs/agents.md)."""

    submission_expiry_seconds: float = setting(
        "submission_expiry_seconds",
        "QS_GATEWAY_SUBMISSION_EXPIRY_SECONDS",
        86_400.0,
        number(float, minimum=1.0),
        "Seconds a submission stays pending; then it is `expired` and can no longer be approved.",
    )
    submission_retention_seconds: float = setting(
        "submission_retention_seconds",
        "QS_GATEWAY_SUBMISSION_RETENTION_SECONDS",
        7 * 86_400.0,
        number(float, minimum=60.0),
        "Seconds a decided (approved, denied, withdrawn, expired) submission is kept for `/api/queue/submission/get`.",
    )
    idempotency_seconds: float = setting(
        "idempotency_seconds",
        "QS_GATEWAY_IDEMPOTENCY_SECONDS",
        86_400.0,
        number(float, minimum=1.0),
        "Seconds an `Idempotency-Key` and the first answer to it are remembered (per principal).",
    )
