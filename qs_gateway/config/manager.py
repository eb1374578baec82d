"""Talking to RE Manager: the socket pool, the timeouts, the breaker and the status cache."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .options import setting
from .parsers import number, parse_method_timeouts


@dataclass(frozen=True)
class ManagerSettings:
    """Talking to RE Manager

    The ZeroMQ sockets to RE Manager, how long to wait for it, the breaker that fails requests at once
    while it does not answer, and the cache of its status.
    """

    pool_size: int = setting(
        "pool_size",
        "QS_GATEWAY_POOL_SIZE",
        4,
        number(int, minimum=1),
        "ZeroMQ sockets to RE Manager per worker process (RE Manager serves one request at a time, so a few suffice).",
    )
    pool_timeout: float = setting(
        "pool_timeout",
        "QS_GATEWAY_POOL_TIMEOUT",
        1.0,
        number(float, minimum=0.0),
        "Seconds a request waits for a free socket before it is answered 503 (the wait counts against the "
        "request's own deadline of `timeout_send` + `timeout_receive`).",
        unit="s",
    )
    timeout_receive: float = setting(
        "timeout_receive",
        "QS_GATEWAY_TIMEOUT_RECEIVE",
        2.0,
        number(float, minimum=0.01),
        "Seconds to wait for RE Manager's reply, then 408 (below the clients' own 5 s).",
        unit="s",
    )
    timeout_send: float = setting(
        "timeout_send",
        "QS_GATEWAY_TIMEOUT_SEND",
        0.5,
        number(float, minimum=0.01),
        "Seconds to wait until RE Manager takes a request, then 408 (nothing was sent).",
        unit="s",
    )
    timeout_receive_bulk: float = setting(
        "timeout_receive_bulk",
        "QS_GATEWAY_TIMEOUT_RECEIVE_BULK",
        5.0,
        number(float, minimum=0.01),
        "Seconds to wait for replies that grow with the facility: the queue, the history, the lists of plans "
        "and devices, the permissions.",
        unit="s",
    )
    method_timeouts: Mapping[str, float] = setting(
        "method_timeouts",
        "QS_GATEWAY_METHOD_TIMEOUTS",
        None,
        parse_method_timeouts,
        "Receive timeouts of single RE Manager methods, in seconds: `{plans_existing: 5}` in YAML, "
        "`plans_existing=5,devices_existing=5` in the variable.",
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
        "While RE Manager takes requests but does not answer them: seconds requests fail at once; then one "
        "request probes RE Manager, and its answer closes the breaker (while it takes no connection, each "
        "request tries one and fails at once if refused).",
        unit="s",
    )
    status_ttl: float = setting(
        "status_ttl",
        "QS_GATEWAY_STATUS_TTL",
        0.4,
        number(float, minimum=0.0),
        "Seconds a fetched RE Manager status is served to all workers (any write through the gateway "
        "invalidates it at once).",
        unit="s",
    )
    status_lease: float = setting(
        "status_lease",
        "QS_GATEWAY_STATUS_LEASE",
        0.02,
        number(float, minimum=0.0, maximum=1.0),
        "Seconds a worker serves the status it last read from Redis without reading it again. While any "
        "worker holds such a lease, a write through the gateway is answered only once every lease taken "
        "before it has ended (at most this long), so a read answered after a write reflects it on every "
        "worker and host. 0: Redis is read for every status.",
        unit="s",
    )
