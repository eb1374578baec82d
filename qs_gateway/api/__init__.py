"""The REST API: one blueprint per resource, all under ``/api``; and the service endpoints
(documentation, health, metrics) at the root."""

from __future__ import annotations

from flask import Flask

from ..extensions import EXTENSION_KEY
from ..web import web
from .auth import auth
from .console import console
from .declare import EndpointSpec, Resource
from .docs import docs
from .environment import environment
from .health import health
from .history import history
from .lock import lock
from .manager import manager, testing
from .metrics import metrics
from .notifications import notifications
from .permissions import permissions
from .queue import queue
from .resources import resources
from .run_engine import run_engine
from .scripts import scripts
from .spreadsheet import spreadsheet
from .sso import sso
from .status import status
from .submissions import submissions

RESOURCES: tuple[Resource, ...] = (
    status,
    queue,
    submissions,
    spreadsheet,
    history,
    environment,
    run_engine,
    resources,
    permissions,
    scripts,
    lock,
    manager,
    testing,
    console,
    notifications,
    auth,
    sso,
)


# Served at the root, outside /api: what proxies, probes, scrapers and browsers ask for.
SERVICE_RESOURCES: tuple[Resource, ...] = (health, metrics, docs, web)


def register_blueprints(app: Flask) -> None:
    settings = app.extensions[EXTENSION_KEY].settings
    for resource in RESOURCES:
        if resource is testing and not settings.http.test_endpoints:
            continue
        app.register_blueprint(resource, url_prefix="/api")
    switched_off = {
        docs: not settings.http.docs,
        metrics: not settings.http.metrics_enabled,
        web: not settings.http.ui,
    }
    for resource in SERVICE_RESOURCES:
        if not switched_off.get(resource):
            app.register_blueprint(resource)


def endpoint_specs() -> list[EndpointSpec]:
    return [spec for resource in RESOURCES + SERVICE_RESOURCES for spec in resource.specs]


__all__ = ["EndpointSpec", "RESOURCES", "SERVICE_RESOURCES", "endpoint_specs", "register_blueprints"]
