"""``Idempotency-Key``: a retried write is answered with the first answer, not carried out again.

Endpoints declared ``idempotent=True`` (adding queue items, executing one, submitting) read the
header. The key is remembered per principal (two callers never share a key) for
``idempotency_seconds``, with the fingerprint of the payload:

* a retry with the same key and payload gets the first answer (header ``Idempotent-Replayed:
  true``), and nothing is sent to RE Manager;
* the same key with another payload is a 422;
* while the first request is still under way, a second one with the key gets a 409 with
  ``Retry-After`` (it is not carried out; its retry gets the first answer).

What is remembered: every answer of the view, including a 408 (RE Manager did not answer in
time: the item may have been added, so the retry must not add it again) and a 502. Failures
before anything reached RE Manager (a busy pool, the breaker open, Redis down, a refused
payload or credentials) are not remembered: the retry is carried out.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import g, request

from ..auth import Principal
from ..exceptions import ApiError, BadRequest, Conflict, UnreadableBody
from ..extensions import services
from ..manager import Reply
from ..submissions.idempotency import fingerprint
from ..transport import ProtocolError, RequestTimeout
from .errors import as_contract_error

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_SANE_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, as a header value is

OPENAPI_PARAMETER = {
    "in": "header",
    "name": HEADER,
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "Makes a retry return the first answer instead of acting again (see docs/agents.md).",
}
STATUSES = (409, 422)  # what an endpoint that reads the header may answer beyond its own

# Errors raised after the request reached RE Manager: whatever it did stands, so they are the answer.
_REACHED_MANAGER = (RequestTimeout, ProtocolError)


def _who(principal: Principal) -> str:
    return principal.uuid or f"{principal.method}:{principal.username}"


def _replay(answer: dict[str, Any]) -> Reply:
    g.idempotent_replayed = True
    if "error" in answer:
        error = ApiError(answer["error"])
        error.status = int(answer["status"])
        raise error
    return Reply(body=answer["body"].encode())


def answer_once(principal: Principal, payload: Any, produce: Callable[[], Any]) -> Any:
    """``produce()``'s answer, or the first answer to this request's ``Idempotency-Key``."""
    key = request.headers.get(HEADER)
    if key is None:
        return produce()
    if not _SANE_KEY.match(key):
        raise BadRequest(f"{HEADER} must be 1 to 255 visible ASCII characters")
    keys = services().idempotency
    who, print_ = _who(principal), fingerprint(request.method, request.path, payload)
    token, held = keys.claim(who, key, print_)
    if token is None:
        if held.fingerprint != print_:
            raise UnreadableBody(
                f"{HEADER} {key!r} was used before with a different request; use a new key for a new request"
            )
        if held.answer is None:
            raise Conflict(f"A request with {HEADER} {key!r} is still being carried out; retry to get its answer")
        return _replay(held.answer)
    try:
        result = produce()
    except _REACHED_MANAGER as exc:
        error = as_contract_error(exc)
        keys.answer(who, key, print_, token, {"status": error.status, "error": error.detail})
        raise
    except BaseException:
        keys.release(who, key, token)
        raise
    reply = result if isinstance(result, Reply) else Reply(result)
    keys.answer(who, key, print_, token, {"status": 200, "body": reply.body.decode()})
    return reply
