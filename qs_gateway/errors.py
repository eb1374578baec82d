"""The error contract, in one place.

* RE Manager answered: 200 with its reply verbatim, ``success: false`` included (not an error).
* RE Manager did not answer in time, or the breaker is open: 408, ``detail`` starting with
  ``Request timeout: ZMQ communication error`` (clients match that text).
* Invalid payload: 400 with ``detail`` and field-level ``errors``; unreadable body: 422.
* Authentication: 401 (400 for a malformed ``Authorization`` header).
* Every other 4xx/5xx, Flask's own 404/405/413 included: JSON with ``detail``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from .manager import dump_json
from .redis_store import StoreUnavailable
from .transport import CircuitOpen, PoolExhausted, ProtocolError, RequestTimeout

logger = logging.getLogger(__name__)

TIMEOUT_DETAIL = "Request timeout: ZMQ communication error: timeout occurred"


class ApiError(Exception):
    """An HTTP error with a JSON body ``{"detail": ..., **extra}``."""

    status = 400

    def __init__(
        self,
        detail: Any,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        self.headers = dict(headers or {})
        self.extra = extra


class BadRequest(ApiError):
    status = 400


class InvalidPayload(BadRequest):
    """The payload did not pass its schema; ``errors`` holds the messages per field."""

    def __init__(self, detail: str, errors: Mapping[str, Any]) -> None:
        super().__init__(detail, errors=errors)


class UnreadableBody(ApiError):
    status = 422


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class ServiceUnavailable(ApiError):
    status = 503

    def __init__(self, detail: str, retry_after: float = 1.0) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, round(retry_after)))})


def json_error(status: int, detail: Any, headers: Mapping[str, str] | None = None, **extra: Any) -> Response:
    response = Response(dump_json({"detail": detail, **extra}), status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        headers = exc.headers
        if exc.status == 401:
            # bluesky-httpserver (after Tiled) names the API root on every 401
            headers = {**headers, "X-Tiled-Root": f"{request.host_url.rstrip('/')}{request.script_root}/api"}
        return json_error(exc.status, exc.detail, headers, **exc.extra)

    @app.errorhandler(RequestTimeout)
    def manager_timeout(exc: RequestTimeout) -> Response:
        return json_error(408, TIMEOUT_DETAIL)

    @app.errorhandler(CircuitOpen)
    def manager_unreachable(exc: CircuitOpen) -> Response:
        detail = f"Request timeout: ZMQ communication error: {exc}"
        return json_error(408, detail, {"Retry-After": str(max(1, round(exc.retry_after)))})

    @app.errorhandler(PoolExhausted)
    def pool_exhausted(exc: PoolExhausted) -> Response:
        detail = f"Service busy: {exc}; retry later"
        return json_error(503, detail, {"Retry-After": str(max(1, round(exc.retry_after)))})

    @app.errorhandler(ProtocolError)
    def protocol_error(exc: ProtocolError) -> Response:
        return json_error(502, str(exc))

    @app.errorhandler(StoreUnavailable)
    def store_unavailable(exc: StoreUnavailable) -> Response:
        return json_error(503, f"Shared state unavailable: {exc}", {"Retry-After": "1"})

    @app.errorhandler(HTTPException)
    def http_exception(exc: HTTPException) -> Response:
        headers = {}
        detail = exc.name
        if exc.code == 405 and exc.valid_methods:
            headers["Allow"] = ", ".join(exc.valid_methods)
        if exc.code == 413:
            limit = current_app.config.get("MAX_CONTENT_LENGTH")
            detail = f"Request body too large: the limit is {limit} bytes"
        return json_error(exc.code or 500, detail, headers)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        logger.exception("Unhandled error")
        return json_error(500, "Internal Server Error")
