"""The application factory."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sys
from dataclasses import replace

from flask import Flask, Response, request

from .api import register_blueprints
from .api.browser import register_browser_hooks
from .config import Settings, load_settings
from .errors import register_error_handlers
from .extensions import EXTENSION_KEY, init_services

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the gateway. Opens no socket and starts no thread: safe to call before a fork."""
    settings = settings or load_settings()
    settings = ensure_single_user_key(settings)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.gateway["max_body_bytes"]
    app.json.sort_keys = False
    # Clients do not follow redirects: /api/status/ must answer like /api/status.
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False
    init_services(app, settings)
    register_blueprints(app)
    register_error_handlers(app)
    register_request_hooks(app)
    register_browser_hooks(app, settings.allow_origins)
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


def register_request_hooks(app: Flask) -> None:
    if app.extensions[EXTENSION_KEY].settings.gateway["worker_header"]:
        worker = f"{socket.gethostname()}:{os.getpid()}"

        @app.after_request
        def name_the_worker(response: Response) -> Response:
            response.headers["X-Gateway-Worker"] = worker
            return response

    @app.after_request
    def drain_request_body(response: Response) -> Response:
        # A kept-alive connection whose body was never read would stall gunicorn's gthread
        # worker (benoitc/gunicorn#3301); read what is left, e.g. after an early 401. A body
        # over the size limit is not read: the connection is closed instead.
        try:
            stream = request.stream
            while stream.read(65536):
                pass
        except Exception:
            response.headers["Connection"] = "close"
        return response
