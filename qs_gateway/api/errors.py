"""Rendering the error contract (:mod:`qs_gateway.exceptions`) as HTTP answers.

* RE Manager answered: 200 with its reply verbatim, ``success: false`` included (not an error).
* RE Manager did not answer in time, or the breaker is open: 408, ``detail`` starting with
  ``Request timeout: ZMQ communication error`` (clients match that text).
* A reply that cannot be read: 502. No free socket, Redis unavailable: 503 with ``Retry-After``.
* Every other 4xx, Flask's own 404/405/413 included: JSON with ``detail``.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException
from werkzeug.sansio.utils import host_is_trusted

from ..exceptions import (
    ApiError,
    BadGateway,
    BodyTooLarge,
    ManagerTimeout,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
)
from ..extensions import services
from ..manager import dump_json
from ..observability import hand_over_error
from ..redis_store import StoreUnavailable
from ..transport import CircuitOpen, PoolExhausted, ProtocolError, RequestTimeout

logger = logging.getLogger(__name__)


def json_error(status: int, detail: Any, headers: Mapping[str, str] | None = None, **extra: Any) -> Response:
    response = Response(dump_json({"detail": detail, **extra}), status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def render(error: ApiError) -> Response:
    headers = error.headers
    if error.status == 401:
        # bluesky-httpserver (after Tiled) names the API root on every 401
        headers = {**headers, "X-Tiled-Root": f"{request.scheme}://{trusted_host()}{request.script_root}/api"}
    hand_over_error(error.detail)
    return json_error(error.status, error.detail, headers, **error.extra)


def trusted_host() -> str:
    """The host the gateway is reached by, never one a client made up: the request's when it is
    one of ``trusted_hosts``, or was named by a trusted proxy (``proxy_hops``, through ProxyFix);
    otherwise the first trusted host, or the address the connection came in on."""
    http = services().settings.http
    if http.trusted_hosts:
        return request.host if host_is_trusted(request.host, http.trusted_hosts) else http.trusted_hosts[0]
    if http.proxy_hops:
        return request.host
    environ = request.environ
    connection = environ.get("gunicorn.socket")
    if connection is not None and connection.family == socket.AF_UNIX:
        return "localhost"  # gunicorn made SERVER_NAME up from the Host header
    name, port = environ.get("SERVER_NAME", "localhost"), str(environ.get("SERVER_PORT", ""))
    default_port = {"http": "80", "https": "443"}.get(request.scheme)
    return name if port in ("", default_port) else f"{name}:{port}"


def as_contract_error(exc: Exception) -> ApiError | None:
    """The contract's error for a failure of a lower layer (transport, Redis), if it is one."""
    if isinstance(exc, RequestTimeout):
        return ManagerTimeout()
    if isinstance(exc, CircuitOpen):
        return ManagerTimeout(f"Request timeout: ZMQ communication error: {exc}", retry_seconds=exc.retry_after)
    if isinstance(exc, PoolExhausted):
        return ServiceUnavailable(f"Service busy: {exc}; retry later", exc.retry_after)
    if isinstance(exc, ProtocolError):
        return BadGateway(str(exc))
    if isinstance(exc, StoreUnavailable):
        return ServiceUnavailable(f"Shared state unavailable: {exc}")
    return None


def _from_werkzeug(exc: HTTPException) -> ApiError:
    if exc.code == 404:
        return NotFound(exc.name)
    if exc.code == 405:
        return MethodNotAllowed(exc.name, headers={"Allow": ", ".join(exc.valid_methods or ())})
    if exc.code == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        return BodyTooLarge(f"Request body too large: the limit is {limit} bytes")
    error = ApiError(exc.name)
    error.status = exc.code or 500
    return error


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, render)
    for lower_layer_error in (RequestTimeout, CircuitOpen, PoolExhausted, ProtocolError, StoreUnavailable):
        app.register_error_handler(lower_layer_error, lambda exc: render(as_contract_error(exc)))
    app.register_error_handler(HTTPException, lambda exc: render(_from_werkzeug(exc)))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        logger.exception("Unhandled error")
        hand_over_error("Internal Server Error")
        return json_error(500, "Internal Server Error")
