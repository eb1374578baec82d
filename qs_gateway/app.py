"""The application factory."""

from __future__ import annotations

import logging
import secrets
import sys
from dataclasses import replace

from flask import Flask

from .api import register_blueprints
from .api.errors import register_error_handlers
from .api.hooks import register_request_hooks
from .config import Settings, load_settings
from .extending import register_custom_blueprints
from .extensions import init_services

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
