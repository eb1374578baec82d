"""The REST API: one blueprint per resource, all under ``/api``; and the service endpoints
(documentation, health, metrics) at the root. The application factory (:mod:`qs_gateway.app`)
lists the resources and registers them."""

from __future__ import annotations

from .declare import EndpointSpec, Resource

__all__ = ["EndpointSpec", "Resource"]
