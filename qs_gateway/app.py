"""The application factory."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sys
from dataclasses import replace

from flask import Flask, Response, request
from werkzeug.middleware.proxy_fix import ProxyFix

from .api import register_blueprints
from .api.browser import register_browser_hooks
from .api.errors import register_error_handlers
from .config import Settings, load_settings
from .extending import register_custom_blueprints
from .extensions import EXTENSION_KEY, init_services
from .observability import register_observability

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the gateway. Opens no socket and starts no thread: safe to call before a fork."""
    settings = settings or load_settings()
    settings = ensure_single_user_key(settings)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.http.max_body_bytes
    app.json.sort_keys = False
    # Clients do not follow redirects: /api/status/ must answer like /api/status.
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False
    init_services(app, settings)
    register_blueprints(app)
    register_custom_blueprints(app, settings.extensions.custom_routers)
    register_error_handlers(app)
    register_request_hooks(app)
    register_browser_hooks(app, settings.browser.allow_origins)
    register_observability(app)
    wrap_wsgi(app, settings)
    return app


def wrap_wsgi(app: Flask, settings: Settings) -> None:
    http = settings.http
    hops = http.proxy_hops
    if hops:
        # Trust exactly as many X-Forwarded-* values as there are proxies: a client could forge more.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=hops)
    if http.metrics_bind:
        from .api.metrics import MetricsListener

        services = app.extensions[EXTENSION_KEY]
        app.wsgi_app = MetricsListener(app.wsgi_app, http.metrics_bind, lambda: services.metrics)


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


def register_request_hooks(app: Flask) -> None:
    if app.extensions[EXTENSION_KEY].settings.http.worker_header:
        worker = f"{socket.gethostname()}:{os.getpid()}"

        @app.after_request
        def name_the_worker(response: Response) -> Response:
            response.headers["X-Gateway-Worker"] = worker
            return response

    @app.after_request
    def unbuffered_streams(response: Response) -> Response:
        # A proxy must pass a stream on as it is produced (nginx honours this header);
        # files (direct passthrough) may be buffered.
        if response.is_streamed and not response.direct_passthrough:
            response.headers.setdefault("X-Accel-Buffering", "no")
        return response

    @app.after_request
    def drain_request_body(response: Response) -> Response:
        # A kept-alive connection whose body was never read would stall gunicorn's gthread
        # worker (benoitc/gunicorn#3301); read what is left, e.g. after an early 401. A body
        # over the size limit is not read: the connection is closed instead.
        environ = request.environ
        if not environ.get("CONTENT_LENGTH") and "HTTP_TRANSFER_ENCODING" not in environ:
            return response  # no body was sent
        try:
            stream = request.stream
            while stream.read(65536):
                pass
        except Exception:
            response.headers["Connection"] = "close"
        return response
