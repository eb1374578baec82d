"""A schemathesis check of the gateway's own contract, and unique idempotency keys (loaded with
SCHEMATHESIS_HOOKS).

A schema-violating request to an endpoint that sends an RE Manager method may be answered 200
in RE Manager's refusal shape (the operation's ``x-refusal`` says how), as bluesky-httpserver
answers it when RE Manager refuses the value. A refusal the gateway made itself (it carries the
field ``errors``) must be exactly that shape: ``success: false``, ``msg`` starting with the
method's words, and every other key RE Manager fills on failure.
"""

from __future__ import annotations

import re
import uuid

import schemathesis


@schemathesis.check
def refusals_are_in_re_managers_shape(ctx, response, case):  # noqa: ANN001, ANN201 - schemathesis' signature
    refusal = case.operation.definition.raw.get("x-refusal")
    if refusal is None or response.status_code != 200:
        return None
    try:
        body = response.json()
    except ValueError:
        return None  # not a JSON answer (e.g. the automatic answer to OPTIONS)
    if not isinstance(body, dict) or "errors" not in body:
        return None  # RE Manager's own answer, passed on as it is
    prefixes = (refusal["prefix"], *(refusal["batch"]["summary"].split("{")[:1] if "batch" in refusal else ()))
    if body.get("success") is not False or not str(body.get("msg", "")).startswith(prefixes):
        raise AssertionError(f"a refusal not in RE Manager's shape for {refusal}: {str(body)[:300]}")
    missing = [name for name in refusal["fields"] if name not in body]
    if missing:
        raise AssertionError(f"a refusal without {missing}: {str(body)[:300]}")
    return True


_SANE_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


@schemathesis.hook
def before_call(ctx, case, **kwargs):  # noqa: ANN001, ANN201 - schemathesis' signature
    """Each generated request gets an Idempotency-Key of its own (when the generated one is
    valid): the generator repeats keys such as "0" with different bodies, which the gateway rightly
    answers 422, and a check of valid data cannot know that the key was used before. Invalid
    keys are sent as generated."""
    headers = case.headers or {}
    key = headers.get("Idempotency-Key")
    if isinstance(key, str) and _SANE_KEY.match(key):
        headers["Idempotency-Key"] = f"{key[:240]}-{uuid.uuid4().hex[:12]}"
