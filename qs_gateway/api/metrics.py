"""``/metrics``: Prometheus metrics of all workers, for callers with the ``admin:metrics`` scope
(registered only when metrics are on).

With ``metrics_bind`` set, a scraper can instead read them without credentials on that separate
address (see :class:`MetricsListener`), which should then be reachable only from the scraper.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Response

from ..extensions import services
from .declare import Call, Resource

metrics = Resource("metrics", __name__)


@metrics.endpoint("/metrics", scope="admin:metrics")
def prometheus_metrics(call: Call) -> Response:
    """Prometheus metrics: requests, latency, sockets, breaker, timeouts, streams (all workers)."""
    body, content_type = services().metrics.exposition()
    return Response(body, content_type=content_type)


def listener_address(bind: str) -> str | int:
    """What a connection accepted on ``bind`` sees as its local address: the socket path of a
    unix socket, else the port (the host part may be a wildcard or a name)."""
    if bind.startswith("unix:"):
        return bind[len("unix:") :]
    return int(bind.rpartition(":")[2])


class MetricsListener:
    """WSGI middleware: connections accepted on the metrics address get ``/metrics`` and nothing else.

    The listener is recognised from the connection's own socket (gunicorn puts it in the
    environ), never from headers a client could forge.
    """

    def __init__(self, app: Callable, bind: str, get_metrics: Callable[[], Any]) -> None:
        self.app = app
        self.address = listener_address(bind)
        self.get_metrics = get_metrics

    def _on_metrics_listener(self, environ: dict) -> bool:
        sock = environ.get("gunicorn.socket")
        if sock is None:
            return False
        local = sock.getsockname()
        if isinstance(self.address, str):
            return local == self.address or local == self.address.encode()
        return isinstance(local, tuple) and local[1] == self.address

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if not self._on_metrics_listener(environ):
            return self.app(environ, start_response)
        collected = self.get_metrics()
        if environ.get("PATH_INFO", "").rstrip("/") != "/metrics" or collected is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"Not Found: this address serves /metrics only\n"]
        body, content_type = collected.exposition()
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]
