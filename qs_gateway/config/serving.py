"""How gunicorn serves the gateway: its address, processes, threads and log lines, and what a slow
client may take of a worker's time (see :mod:`qs_gateway.serving.worker`)."""

from __future__ import annotations

from dataclasses import dataclass

from .options import setting
from .parsers import choice, number, parse_str


@dataclass(frozen=True)
class ServingSettings:
    """How gunicorn serves the gateway

    Where it listens, its processes and threads, its log lines, and what a slow client may take of a
    worker's time.
    """

    bind: str = setting(
        "bind",
        "QS_GATEWAY_BIND",
        "127.0.0.1:60610",
        parse_str,
        "Address gunicorn listens on: `host:port` or `unix:/path/to/socket`.",
    )
    workers: int = setting("workers", "QS_GATEWAY_WORKERS", 2, number(int, minimum=1), "gunicorn worker processes.")
    threads: int = setting(
        "threads", "QS_GATEWAY_THREADS", 16, number(int, minimum=1), "Request threads per worker (gthread)."
    )
    log_format: str = setting(
        "log_format",
        "QS_GATEWAY_LOG_FORMAT",
        "text",
        choice("text", "json"),
        "Log lines as `text` or `json`; with `json` every log line (gunicorn's included) is one JSON object.",
    )
    # Slow clients (see qs_gateway.serving.worker): what a client may take of a worker's time.
    header_timeout: float = setting(
        "header_timeout",
        "QS_GATEWAY_HEADER_TIMEOUT",
        5.0,
        number(float, minimum=0.1),
        "Seconds a client has to send a request's line and headers (from the connection, or from the first byte "
        "of the next request on a kept-alive one); then 408 and the connection is closed. See "
        "[Security](security.md).",
        unit="s",
    )
    body_timeout: float = setting(
        "body_timeout",
        "QS_GATEWAY_BODY_TIMEOUT",
        5.0,
        number(float, minimum=0.1),
        "Seconds a request body may keep the gateway waiting at a time, and in all plus one second for every "
        "`body_min_rate` bytes received; then 408 and the connection is closed.",
        unit="s",
    )
    body_min_rate: int = setting(
        "body_min_rate",
        "QS_GATEWAY_BODY_MIN_RATE",
        1024,
        number(int, minimum=1),
        "Bytes per second a slow request body must keep up to extend its deadline (a 64 MiB upload may take a "
        "bit over 18 hours at this rate; a body trickling 1 byte a second is cut after `body_timeout`).",
        unit="bytes/s",
    )
    reserved_threads: int = setting(
        "reserved_threads",
        "QS_GATEWAY_RESERVED_THREADS",
        4,
        number(int, minimum=0),
        "Threads of each worker kept for requests that have arrived whole: at most `threads - reserved_threads` "
        "(at least 1) requests wait for their bodies at a time; more are answered 503 with `Retry-After`.",
    )
