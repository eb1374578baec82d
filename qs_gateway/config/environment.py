"""Environment variables the gateway reads that are no settings: gunicorn's log level (read by
:mod:`qs_gateway.serving.gunicorn_config`) and prometheus_client's directory (read by
:mod:`qs_gateway.metrics` and by prometheus_client itself). Their names and defaults live here, in
the config package, so that docs/configuration.md lists them with the settings; the readers take
them from here."""

from __future__ import annotations

from .options import Documented

LOG_LEVEL_ENV = "QS_GATEWAY_LOG_LEVEL"
LOG_LEVEL_DEFAULT = "info"
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

DOCUMENTED_VARIABLES: tuple[Documented, ...] = (
    Documented(
        env=LOG_LEVEL_ENV,
        default=LOG_LEVEL_DEFAULT,
        help="Log level of gunicorn and of the gateway's own log lines: `debug`, `info`, `warning`, `error` or "
        "`critical`.",
        group="serving",
    ),
    Documented(
        env=MULTIPROCESS_DIR_ENV,
        shown_default="a temporary directory",
        help="Where gunicorn's workers keep their metric values; emptied at start. Give it a directory on tmpfs "
        "(the systemd unit uses `/run/qs-gateway/metrics`).",
        group="http",
    ),
)
