"""What the gateway tells about each request: a request id, one log line, metrics, and an audit
line for every request that may change state.

* ``X-Request-ID``: taken from the request when it is a sane token (nginx or a client may set
  it), generated otherwise, and returned on the response and in every line about the request.
* ``qs_gateway.request``: one line per request (method, path without secrets, status, time,
  user).
* ``qs_gateway.audit``: one line per state-changing request (any method but GET/HEAD/OPTIONS):
  who, which endpoint, and what RE Manager answered (``success``/``msg``) or the error status.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

from flask import Response, current_app, g, request

from .config.redact import redact_query
from .extensions import EXTENSION_KEY
from .manager import Reply

request_log = logging.getLogger("qs_gateway.request")
audit_log = logging.getLogger("qs_gateway.audit")

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
UNMATCHED = "<unmatched>"  # one label for every unknown path, so scanners cannot grow the metrics
_MAX_MSG = 500


class _RequestIds:
    """Ids for requests that bring none: 32 hex digits, a random half per process and a counter
    (a random id per request would cost a system call on every request, and so would asking
    for the process id: a forked worker is given its own random half as it starts)."""

    def __init__(self) -> None:
        self.renew()

    def renew(self) -> None:
        # (prefix, counter) replaced as one object: a thread never sees a half-made state
        self._state: tuple[str, Iterator[int]] = (uuid.uuid4().hex[:16], itertools.count(1))

    def next(self) -> str:
        prefix, counter = self._state
        return f"{prefix}{next(counter):016x}"


_request_ids = _RequestIds()
os.register_at_fork(after_in_child=_request_ids.renew)
_new_request_id = _request_ids.next


def request_id_from(header: str | None) -> str:
    return header if header and _SANE_REQUEST_ID.match(header) else _new_request_id()


def _who() -> dict[str, Any]:
    principal = getattr(g, "principal", None)
    if principal is None:
        return {"user": None}
    return {"user": principal.username, "auth": principal.method}


def hand_over_reply(reply: Reply) -> None:
    """The view's reply, for the audit line (the response body may be compressed or cached bytes)."""
    g.audited_reply = reply


def hand_over_audit(**fields: Any) -> None:
    """More for the audit line than RE Manager's verdict (e.g. the submissions a request decided)."""
    g.audited_fields = {**g.get("audited_fields", {}), **fields}


def hand_over_error(detail: Any) -> None:
    """The error an answer reports, for the audit line."""
    g.audited_error = detail


def _outcome(status: int) -> dict[str, Any]:
    """RE Manager's verdict (``success``, ``msg``) or the error, as the view or the error
    handler handed it over."""
    if status >= 400:
        detail = g.get("audited_error")
        return {"error": str(detail)[:_MAX_MSG] if detail is not None else status}
    reply = g.get("audited_reply")
    if reply is None:
        return {}
    outcome: dict[str, Any] = {}
    success = reply.get("success", _ABSENT)
    if success is not _ABSENT:
        outcome["success"] = success
    msg = reply.get("msg")
    if msg:
        outcome["msg"] = str(msg)[:_MAX_MSG]
    return outcome


_ABSENT = object()


_REQUEST_ID_ENVIRON = "HTTP_" + REQUEST_ID_HEADER.upper().replace("-", "_")
# The id the answer carries, for the WSGI layer that adds it (qs_gateway.api.hooks.AnswerHeaders).
ANSWER_REQUEST_ID = "qs_gateway.request_id"


def start_request() -> None:
    """Before the view: the request's id and start time, for every line written about it."""
    context = g._get_current_object()  # one proxy lookup instead of two
    context.request_started = time.perf_counter()
    environ = request.environ
    context.request_id = environ[ANSWER_REQUEST_ID] = request_id_from(environ.get(_REQUEST_ID_ENVIRON))


def account_for_request(response: Response) -> Response:
    """After everything else: the request's metrics, its log line and, for a request that may
    change state, its audit line (with the final status). The answer's ``X-Request-ID`` header
    is added to the header list by the WSGI layer (``AnswerHeaders``)."""
    services = current_app.extensions[EXTENSION_KEY]
    context = g._get_current_object()  # one proxy lookup instead of several
    seconds = time.perf_counter() - context.get("request_started", time.perf_counter())
    current = request._get_current_object()  # one proxy lookup instead of many
    request_id = context.get("request_id")
    if request_id is None:  # start_request did not run (a hook before it refused the request)
        request_id = context.request_id = current.environ[ANSWER_REQUEST_ID] = request_id_from(None)
    endpoint = current.url_rule.rule if current.url_rule is not None else UNMATCHED
    status = response.status_code
    if services.metrics is not None:
        services.metrics.observe_request(endpoint, current.method, status, seconds)
        services.metrics.sample_pool(services.pool)

    if request_log.isEnabledFor(logging.INFO):
        _log_request(request_id, status, seconds)
    if current.method not in READ_ONLY_METHODS and audit_log.isEnabledFor(logging.INFO):
        audit = {
            "request_id": request_id,
            **_who(),
            "endpoint": endpoint,
            "method": current.method,
            "status": status,
            **_outcome(status),
            **g.get("audited_fields", {}),
        }
        audit_log.info("audit", extra={"fields": audit})
    return response


def _log_request(request_id: str, status: int, seconds: float) -> None:
    path = request.path
    query = redact_query(request.query_string.decode("latin-1"))
    fields = {
        "request_id": request_id,
        "method": request.method,
        "path": f"{path}?{query}" if query else path,
        "status": status,
        "duration_ms": round(seconds * 1000, 1),
        "remote_addr": request.remote_addr,
        **_who(),
    }
    request_log.info("request", extra={"fields": fields})
