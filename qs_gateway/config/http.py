"""What the gateway answers over HTTP beyond the API itself."""

from __future__ import annotations

from dataclasses import dataclass

from .options import setting
from .parsers import number, parse_bool, parse_str, separated_list


@dataclass(frozen=True)
class HttpSettings:
    """HTTP beyond the API

    What the gateway answers over HTTP besides the API itself: compression, the largest body, the
    proxies in front of it, its documentation and web page, the test endpoints and metrics.
    """

    gzip_min_bytes: int = setting(
        "gzip_min_bytes",
        "QS_GATEWAY_GZIP_MIN_BYTES",
        4096,
        number(int, minimum=0),
        "Answers at least this large are gzip-compressed for clients that send `Accept-Encoding: gzip` (`0`: "
        "never); cached answers are compressed once.",
        unit="bytes",
    )
    worker_header: bool = setting(
        "worker_header",
        "QS_GATEWAY_WORKER_HEADER",
        False,
        parse_bool,
        "`1`: every response carries `X-Gateway-Worker: host:pid`, to see which worker answered.",
    )
    max_body_bytes: int = setting(
        "max_body_bytes",
        "QS_GATEWAY_MAX_BODY_BYTES",
        64 * 1024 * 1024,
        number(int, minimum=1024),
        "Largest accepted request body, then 413.",
        unit="bytes",
    )
    proxy_hops: int = setting(
        "proxy_hops",
        "QS_GATEWAY_PROXY_HOPS",
        0,
        number(int, minimum=0),
        "Proxies in front of the gateway whose `X-Forwarded-For/-Proto/-Host/-Port/-Prefix` are trusted: `1` "
        "behind one nginx. Never more than there are: a client could forge the rest.",
    )
    docs: bool = setting(
        "docs", "QS_GATEWAY_DOCS", True, parse_bool, "Serve `/openapi.json` and the Swagger UI page `/docs`."
    )
    ui: bool = setting(
        "ui",
        "QS_GATEWAY_UI",
        True,
        parse_bool,
        "Serve the control room web page at `/` and `/ui/` (see [The web page](web-page.md)).",
    )
    test_endpoints: bool = setting(
        "test_endpoints",
        "QS_GATEWAY_TEST_ENDPOINTS",
        True,
        parse_bool,
        "Serve `/api/test/server/sleep` and `/api/test/manager/kill`, which clients' test suites use (`0`: they "
        "answer 404; set it in production).",
    )
    trusted_hosts: tuple[str, ...] = setting(
        "trusted_hosts",
        "QS_GATEWAY_TRUSTED_HOSTS",
        (),
        separated_list(None),
        "Host names the gateway is reached by (white-space separated in the variable); `X-Tiled-Root` names the "
        "request's host only if it is one of them (or a trusted proxy named it), otherwise the first of them or "
        "the address the connection came in on.",
    )
    metrics: bool = setting(
        "metrics",
        "QS_GATEWAY_METRICS",
        False,
        parse_bool,
        "`1`: collect Prometheus metrics and serve them at `/metrics` to callers with the `admin:metrics` scope.",
    )
    metrics_bind: str = setting(
        "metrics_bind",
        "QS_GATEWAY_METRICS_BIND",
        "",
        parse_str,
        "A second address (`host:port` or `unix:/path`) that serves `/metrics` only, without credentials (turns "
        "metrics on); keep it reachable from the scraper only.",
    )
    prometheus: bool = setting(
        "prometheus",
        None,
        False,
        parse_bool,
        "bluesky-httpserver's switch for metrics: `true` turns them on, like `QS_GATEWAY_METRICS=1`.",
        section="metrics",
    )

    @property
    def metrics_enabled(self) -> bool:
        return bool(self.prometheus or self.metrics or self.metrics_bind)
