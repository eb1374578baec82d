"""What the gateway answers over HTTP beyond the API itself."""

from __future__ import annotations

from dataclasses import dataclass

from .options import setting
from .parsers import number, parse_bool, parse_str, separated_list


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
