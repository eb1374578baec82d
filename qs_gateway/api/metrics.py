"""``/metrics``: Prometheus metrics of all workers, for callers with the ``admin:metrics`` scope
(registered only when metrics are on).

With ``metrics_bind`` set, a scraper can instead read them without credentials on that separate
address (see :class:`qs_gateway.api.hooks.MetricsListener`), which should then be reachable
only from the scraper.
"""

from __future__ import annotations

from flask import Response

from ..extensions import services
from .declare import Call, Resource

metrics = Resource("metrics", __name__)


@metrics.endpoint("/metrics", scope="admin:metrics")
def prometheus_metrics(call: Call) -> Response:
    """Prometheus metrics: requests, latency, sockets, breaker, timeouts, streams (all workers)."""
    body, content_type = services().metrics.exposition()
    return Response(body, content_type=content_type)
