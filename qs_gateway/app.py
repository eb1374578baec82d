"""The application factory."""

from __future__ import annotations

import logging
import secrets
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from flask import Flask

from .api.auth import auth
from .api.console import console
from .api.declare import EndpointSpec, Resource
from .api.docs import docs
from .api.environment import environment
from .api.errors import register_error_handlers
from .api.health import health
from .api.history import history
from .api.hooks import register_request_hooks
from .api.lock import lock
from .api.manager import manager, testing
from .api.metrics import metrics
from .api.notifications import notifications
from .api.permissions import permissions
from .api.queue import queue
from .api.resources import resources
from .api.run_engine import run_engine
from .api.scripts import scripts
from .api.spreadsheet import spreadsheet
from .api.sso import sso
from .api.status import status
from .api.submissions import submissions
from .config import Settings, load_settings
from .extending import register_custom_blueprints
from .extensions import init_services
from .web import web

logger = logging.getLogger(__name__)

# The REST API, under /api.
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


class GatewayFlask(Flask):
    """Flask, deciding once per function whether it must be run as a coroutine: Flask asks on
    every request for every hook and view (``inspect``'s check costs about a microsecond)."""

    SYNC_FUNCTIONS_KEPT = 1024  # hooks, views and error handlers: a few hundred at most

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync_functions: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        try:
            return self._sync_functions[func]
        except (KeyError, TypeError):  # TypeError: an unhashable callable
            pass
        sync = super().ensure_sync(func)
        if len(self._sync_functions) < self.SYNC_FUNCTIONS_KEPT:
            try:
                self._sync_functions[func] = sync
            except TypeError:
                pass
        return sync


def create_app(settings: Settings | None = None) -> Flask:
    """Build the gateway. Opens no socket and starts no thread: safe to call before a fork."""
    settings = settings or load_settings()
    settings = ensure_single_user_key(settings)
    app = GatewayFlask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.http.max_body_bytes
    app.json.sort_keys = False
    # Clients do not follow redirects: /api/status/ must answer like /api/status.
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False
    init_services(app, settings)
    register_blueprints(app, settings)
    register_custom_blueprints(app, settings.extensions.custom_routers)
    register_error_handlers(app)
    register_request_hooks(app, settings)
    return app


def ensure_single_user_key(settings: Settings) -> Settings:
    """Without login providers a single-user key always exists; generate one if none is set.

    Under gunicorn the master generates it before forking (see the gunicorn configuration), so
    every worker receives the same key through the environment.
    """
    if settings.auth.providers or settings.auth.single_user_api_key:
        return settings
    key = secrets.token_hex(32)
    print(f"qs-gateway: no single-user API key configured; generated one: {key}", file=sys.stderr, flush=True)
    return replace(settings, auth=replace(settings.auth, single_user_api_key=key))


def register_blueprints(app: Flask, settings: Settings) -> None:
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
