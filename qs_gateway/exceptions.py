"""The error contract: what can go wrong, each with its HTTP status and its documented meaning.

This module depends on nothing (no Flask, no transport): any layer may raise these errors, the
handlers in :mod:`qs_gateway.api.errors` render them as JSON ``{"detail": ..., **extra}``, and
the OpenAPI document takes its error answers from :data:`CONTRACT`.

Not errors: RE Manager's own refusals (``success: false``) are answers, HTTP 200, as RE Manager
gave them; a value the gateway refuses itself on behalf of an RE Manager method is answered in
the same shape (see :mod:`qs_gateway.manager.refusals`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

# Clients (and bluesky-httpserver's tests) match this text on a 408.
TIMEOUT_DETAIL = "Request timeout: ZMQ communication error: timeout occurred"


class ApiError(Exception):
    """An HTTP error answered as JSON ``{"detail": ..., **extra}``."""

    status: ClassVar[int] = 500
    description: ClassVar[str] = ""
    body: ClassVar[str] = "error"  # the documented body: "error", "fields" (detail + errors) or "html"

    def __init__(self, detail: Any, *, headers: Mapping[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, round(seconds)))}


class BadRequest(ApiError):
    status = 400
    description = (
        "The payload is wrong in a way the reference server also refuses with 400 (unknown or missing keys; "
        "`errors` then says which field and why), the `Authorization` header is malformed, or the endpoint is "
        "not available in this mode; nothing was sent to RE Manager."
    )
    body = "fields"


class InvalidPayload(BadRequest):
    """The payload did not pass its schema; ``errors`` holds the messages per field."""

    def __init__(self, detail: str, errors: Mapping[str, Any]) -> None:
        super().__init__(detail, errors=errors)
        self.errors = errors


class Unauthorized(ApiError):
    status = 401
    description = "Missing or invalid credentials, or a scope the caller lacks."


class Forbidden(ApiError):
    status = 403
    description = (
        "A browser request that authenticates with the API-key cookie did not echo the CSRF token (double submit)."
    )


class NotFound(ApiError):
    status = 404
    description = "Nothing answers to the path or its parameters."


class MethodNotAllowed(ApiError):
    status = 405
    description = "The path exists, but not for this HTTP method (`Allow` lists those it takes)."


class TimedOut(ApiError):
    status = 408
    description = (
        "RE Manager did not answer in time, or the gateway is failing fast after repeated timeouts; or the client "
        "sent its request too slowly (the connection is then closed)."
    )


class ClientTooSlow(TimedOut):
    """The request's body did not arrive within its deadline (``body_timeout``, ``body_min_rate``)."""

    def __init__(self, detail: str = "Request timeout: the request body did not arrive in time") -> None:
        super().__init__(detail)


class ManagerTimeout(TimedOut):
    description = "RE Manager did not answer in time, or the gateway is failing fast after repeated timeouts."

    def __init__(self, detail: str = TIMEOUT_DETAIL, *, retry_seconds: float | None = None) -> None:
        super().__init__(detail, headers=retry_after(retry_seconds) if retry_seconds is not None else None)


class BodyTooLarge(ApiError):
    status = 413
    description = "The body is larger than the gateway accepts."


class URITooLong(ApiError):
    status = 414
    description = "The URL is longer than the server reads (gunicorn's `limit_request_line`)."
    body = "html"  # gunicorn answers it itself, before the gateway sees the request


class Conflict(ApiError):
    status = 409
    description = (
        "A request with the same `Idempotency-Key` is still being carried out; retry shortly (`Retry-After`) "
        "to get its answer."
    )

    def __init__(self, detail: str, retry_seconds: float = 1.0) -> None:
        super().__init__(detail, headers=retry_after(retry_seconds))


class UnreadableBody(ApiError):
    status = 422
    description = (
        "The body is not a JSON object (or not the form the endpoint reads), or its `Idempotency-Key` was used "
        "before with a different request."
    )


class TooManyRequests(ApiError):
    status = 429
    description = (
        "Too many failed logins for this user name or from this client address, or too many failed "
        "credential checks from this address; `Retry-After` says when to try again."
    )

    def __init__(self, detail: str, retry_seconds: float) -> None:
        super().__init__(detail, headers=retry_after(retry_seconds))


class BadGateway(ApiError):
    status = 502
    description = "RE Manager's reply could not be read (not JSON or msgpack of the configured encoding)."


class ServiceUnavailable(ApiError):
    status = 503
    description = (
        "No connection to RE Manager became free in time, Redis (shared state) or the identity provider does "
        "not answer, too many "
        "streams are open, too many requests are still sending their bodies, or another test sleep runs; "
        "`Retry-After` says when to try again."
    )

    def __init__(self, detail: str, retry_seconds: float = 1.0, **extra: Any) -> None:
        super().__init__(detail, headers=retry_after(retry_seconds), **extra)


def _contract() -> Mapping[int, type[ApiError]]:
    """One documented error per status: the most general class that has it."""
    found: dict[int, type[ApiError]] = {}
    pending = list(ApiError.__subclasses__())
    while pending:
        cls = pending.pop(0)
        found.setdefault(cls.status, cls)
        pending.extend(cls.__subclasses__())
    return dict(sorted(found.items()))


CONTRACT: Mapping[int, type[ApiError]] = _contract()
